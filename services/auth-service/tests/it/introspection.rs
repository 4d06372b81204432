//! Who may introspect what over HTTP (RFC 7662 §4): a token is described to its own client, an
//! access token also to its audience's `introspection_clients` and to `introspection.clients`;
//! anyone else, a freshly registered client in particular, is told `{"active": false}`.

use serde_json::{Value, json};

use crate::harness::*;

const API: &str = "https://api.example.com/mcp";
const API_SERVER_SECRET: &str = "api-server-secret-0123456789abcdef";

async fn introspect_as(s: &TestServer, id: &str, secret: &str, token: &str) -> Value {
    let r = s
        .http
        .post(s.url("/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

/// Access and refresh token of a user of a fresh confidential client; returns (id, secret, at, rt).
async fn confidential_login(s: &TestServer) -> (String, String, String, String) {
    let (cid, secret) = s
        .confidential_client(&["authorization_code", "refresh_token"])
        .await;
    let code = s.code_for(&cid, None).await;
    let (status, body, _) = s
        .token_basic(
            &cid,
            &secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("redirect_uri", REDIRECT),
                ("resource", RESOURCE),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let at = body["access_token"].as_str().unwrap().to_owned();
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    (cid, secret, at, rt)
}

#[tokio::test]
async fn a_registered_client_cannot_introspect_another_clients_tokens() {
    // The attack: anyone may register a confidential client, then ask about any token.
    let s = TestServer::start().await;
    let (_, body) = s.login(None).await;
    let at = body["access_token"].as_str().unwrap();
    let rt = body["refresh_token"].as_str().unwrap();
    let (snoop, snoop_secret) = s
        .confidential_client(&["authorization_code", "refresh_token"])
        .await;
    for token in [at, rt] {
        assert_eq!(
            introspect_as(&s, &snoop, &snoop_secret, token).await,
            json!({"active": false}),
            "a registered client learns nothing about another client's token"
        );
    }
    // The configured introspection client still sees the access token.
    assert_eq!(s.introspect(at).await["active"], true);
    // A machine client registered with the operator's initial access token is no different.
    let (machine, machine_secret) = s.confidential_client(&["client_credentials"]).await;
    assert_eq!(
        introspect_as(&s, &machine, &machine_secret, at).await,
        json!({"active": false})
    );
    s.stop().await;
}

#[tokio::test]
async fn a_client_may_introspect_its_own_tokens_and_no_one_else_its_refresh_tokens() {
    let s = TestServer::start().await;
    let (cid, secret, at, rt) = confidential_login(&s).await;
    let a = introspect_as(&s, &cid, &secret, &at).await;
    assert_eq!(a["active"], true, "{a}");
    assert_eq!(a["token_use"], "access_token");
    let r = introspect_as(&s, &cid, &secret, &rt).await;
    assert_eq!(r["active"], true, "{r}");
    assert_eq!(r["token_use"], "refresh_token");
    assert_eq!(r["client_id"], cid.as_str());
    assert_eq!(r["aud"], RESOURCE);
    assert!(
        r.get("token_type").is_none(),
        "RFC 7662 token_type is for access tokens: {r}"
    );
    assert!(
        r["exp"].as_i64().unwrap() > a["exp"].as_i64().unwrap(),
        "refresh tokens outlive access tokens"
    );
    // Its refresh token is nobody else's business: not the introspection client's, not
    // another registered client's.
    assert_eq!(s.introspect(&rt).await, json!({"active": false}));
    let (other, other_secret, _, _) = confidential_login(&s).await;
    assert_eq!(
        introspect_as(&s, &other, &other_secret, &rt).await,
        json!({"active": false})
    );
    // Asking did not spend it.
    let (status, body, _) = s
        .token_basic(
            &cid,
            &secret,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn a_resource_server_introspects_the_tokens_of_its_own_resource_only() {
    // The test configuration lists API_SERVER in the introspection_clients of API.
    let s = TestServer::start_with(Options {
        toml: format!(
            "[introspection]\nclients = []\n\n\
             [[clients]]\nclient_id = \"{API_SERVER}\"\nclient_secret_sha256 = \"{}\"\n\
             grant_types = [\"client_credentials\"]\ntoken_endpoint_auth_method = \"client_secret_basic\"\n",
            sha256_hex(API_SERVER_SECRET)
        ),
        ..Default::default()
    })
    .await;
    let cc = |resource: &'static str| {
        let s = &s;
        async move {
            let (status, body, _) = s
                .token_basic(
                    STATIC_CLIENT,
                    STATIC_SECRET,
                    &[("grant_type", "client_credentials"), ("resource", resource)],
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let for_api = cc(API).await;
    let for_mcp = cc(RESOURCE).await;
    let a = introspect_as(&s, API_SERVER, API_SERVER_SECRET, &for_api).await;
    assert_eq!(
        (&a["active"], &a["aud"]),
        (&json!(true), &json!(API)),
        "{a}"
    );
    assert_eq!(
        introspect_as(&s, API_SERVER, API_SERVER_SECRET, &for_mcp).await,
        json!({"active": false}),
        "a token for another resource"
    );
    // Without `introspection.clients`, a user's token is seen by no client but its own and
    // the resource's servers.
    let (_, body) = s.login(None).await;
    let user_at = body["access_token"].as_str().unwrap();
    assert_eq!(s.introspect(user_at).await, json!({"active": false}));
    assert_eq!(
        introspect_as(&s, API_SERVER, API_SERVER_SECRET, user_at).await,
        json!({"active": false})
    );
    // A client always sees its own access tokens.
    assert_eq!(s.introspect(&for_mcp).await["active"], true);
    s.stop().await;
}
