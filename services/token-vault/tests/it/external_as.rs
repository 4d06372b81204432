//! token-vault behind an external authorization server (`verifier.mode = "jwt"`): the user is
//! the JWT's `sub` (or `<iss>#<sub>`), and no token reaches another user's credential.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::harness::*;

/// An issuer: an ES256 key and a JWKS endpoint serving its public half.
struct Issuer {
    url: String,
    key: EncodingKey,
}

impl Issuer {
    async fn start() -> Issuer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig","x":"{}","y":"{}"}}]}}"#,
            b64.encode(&raw[1..33]),
            b64.encode(&raw[33..65])
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = listener.accept().await else {
                    return;
                };
                let jwks = jwks.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                        jwks.len()
                    );
                    let _ = c.write_all(resp.as_bytes()).await;
                });
            }
        });
        let key = EncodingKey::from_ec_der(&pair.serialize_der());
        Issuer { url, key }
    }

    fn token(&self, sub: &str, aud: &str) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("at+jwt".into());
        h.kid = Some("k1".into());
        let claims = serde_json::json!({
            "iss": self.url, "sub": sub, "aud": aud, "client_id": "mcp-client",
            "exp": now() + 300, "iat": now(), "jti": uuid::Uuid::new_v4().to_string(),
        });
        jsonwebtoken::encode(&h, &claims, &self.key).unwrap()
    }

    fn verifier_toml(&self, qualify: bool) -> String {
        format!(
            "[verifier]\nmode = \"jwt\"\nqualify_subject_with_issuer = {qualify}\n\
             [verifier.jwt]\nissuer = \"{0}\"\njwks_uri = \"{0}/jwks\"\nalgorithms = [\"ES256\"]\n",
            self.url
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwt_mode_keys_users_by_sub_and_keeps_them_apart() {
    let w = World::start().await;
    let idp = Issuer::start().await;
    let other = Issuer::start().await;
    let toml = w.vault_toml(&[("k1", 1)], "k1", &idp.verifier_toml(false));
    let v = w.vault_with(&toml, &[]).await;
    let mut c = v.client();
    let alice_t = w.upstream_tokens("alice", now() + 3600);
    let bob_t = w.upstream_tokens("bob", now() + 3600);
    put(&mut c, "alice", "github", alice_t.clone()).await;
    put(&mut c, "bob", "github", bob_t.clone()).await;

    let alice = idp.token("alice", &w.resource);
    let bob = idp.token("bob", &w.resource);
    assert_eq!(
        get(&mut c, &alice, "github").await.unwrap().access_token,
        alice_t.access_token
    );
    assert_eq!(
        get(&mut c, &bob, "github").await.unwrap().access_token,
        bob_t.access_token
    );
    // Nobody else's: a user with nothing stored, a token for another resource, one signed by
    // another issuer's key, one with its payload changed to name alice.
    assert_eq!(
        get(&mut c, &idp.token("carol", &w.resource), "github")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    for refused in [
        idp.token("alice", "https://other.example/mcp"),
        other.token("alice", &w.resource),
        {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let parts: Vec<&str> = bob.split('.').collect();
            let payload = String::from_utf8(b64.decode(parts[1]).unwrap())
                .unwrap()
                .replace("\"bob\"", "\"alice\"");
            format!("{}.{}.{}", parts[0], b64.encode(payload), parts[2])
        },
        // The vault's own MCP token format is not accepted in jwt mode.
        w.mcp_token("alice", &w.resource),
    ] {
        assert_eq!(
            get(&mut c, &refused, "github").await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    v.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn qualified_subjects_name_the_issuer_too() {
    let w = World::start().await;
    let idp = Issuer::start().await;
    let toml = w.vault_toml(&[("k1", 1)], "k1", &idp.verifier_toml(true));
    let v = w.vault_with(&toml, &[]).await;
    let mut c = v.client();
    let qualified = w.upstream_tokens("alice-q", now() + 3600);
    let bare = w.upstream_tokens("alice-bare", now() + 3600);
    put(
        &mut c,
        &format!("{}#alice", idp.url),
        "github",
        qualified.clone(),
    )
    .await;
    // Another authorization server's "alice", stored under the bare subject.
    put(&mut c, "alice", "plain", bare).await;
    let alice = idp.token("alice", &w.resource);
    assert_eq!(
        get(&mut c, &alice, "github").await.unwrap().access_token,
        qualified.access_token
    );
    assert_eq!(
        get(&mut c, &alice, "plain").await.unwrap_err().code(),
        Code::NotFound
    );
    v.stop().await;
    w.stop().await;
}

#[test]
fn verifier_config_mistakes_are_one_line() {
    let cases = [
        (
            "[verifier]\nmode = \"jwt\"\n",
            "verifier.jwt: required for mode jwt",
        ),
        (
            "[verifier]\nmode = \"introspection_http\"\n",
            "verifier.http: required for mode introspection_http",
        ),
        (
            "[verifier]\nmode = \"jwt\"\n[verifier.jwt]\nissuer = \"https://idp\"\njwks_uri = \"not a url\"\n",
            "verifier.jwt.jwks_uri",
        ),
        (
            "[verifier]\nmode = \"jwt\"\n[verifier.jwt]\nissuer = \"https://idp\"\njwks_uri = \"https://idp/jwks\"\nalgorithms = [\"HS256\"]\n",
            "verifier.jwt.algorithms: HS256 is symmetric",
        ),
        (
            "[verifier]\nmode = \"introspection_http\"\n[verifier.http]\nendpoint = \"ftp://idp/introspect\"\nclient_id = \"v\"\nclient_secret = \"s\"\n",
            "verifier.http.endpoint: must be an http(s) URL",
        ),
        ("[verifier]\nmode = \"static_keys\"\n", "verifier.mode"),
    ];
    for (extra, want) in cases {
        let toml = format!(
            "[introspection]\naccepted_resources = [\"https://mcp.example/mcp\"]\n\
             [encryption]\ncurrent_key = \"k1\"\n[[encryption.keys]]\nid = \"k1\"\nsecret = \"{}\"\n{extra}",
            key_b64(1)
        );
        let path = std::env::temp_dir().join(format!("vault-ext-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, toml).unwrap();
        let e = token_vault::Config::load(Some(&path), &Default::default())
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_file(&path);
        assert!(e.contains(want), "{want:?} not in {e:?}");
        assert!(!e.contains('\n'), "{e}");
    }
}
