//! mcp-service in `introspection_http` mode (RFC 7662) against our own auth-service, the way a
//! deployment that prefers HTTP introspection to gRPC runs it: mcp-service introspects as a
//! pre-registered confidential client that auth-service lists as an introspection client.
//! Checks the two sides of issue 12 together: mcp-service accepts only access tokens for its
//! own audience (item 4), and auth-service describes tokens only to clients entitled to see
//! them (item 2), so an introspector nobody configured learns nothing.

use crate::harness::{OTHER_RESOURCE, Stack, StackOptions, initialize, sha256_hex};

const INTROSPECTOR: &str = "mcp-introspector";
const INTROSPECTOR_SECRET: &str = "mcp-introspector-secret-0123456789";

async fn stack(listed_as_introspector: bool) -> Stack {
    let listed = if listed_as_introspector {
        format!("\n[introspection]\nclients = [\"{INTROSPECTOR}\"]\n")
    } else {
        String::new()
    };
    Stack::start_with(StackOptions {
        auth_toml: format!(
            "{listed}\n[[clients]]\nclient_id = \"{INTROSPECTOR}\"\nclient_name = \"mcp-service\"\n\
             client_secret_sha256 = \"{}\"\ngrant_types = [\"client_credentials\"]\n\
             token_endpoint_auth_method = \"client_secret_basic\"\n",
            sha256_hex(INTROSPECTOR_SECRET)
        ),
        mcp_toml: format!(
            "[verifier]\nmode = \"introspection_http\"\n[verifier.http]\n\
             endpoint = \"{{issuer}}/introspect\"\nclient_id = \"{INTROSPECTOR}\"\n\
             client_secret = \"{INTROSPECTOR_SECRET}\"\nissuer = \"{{issuer}}\"\ncache_ttl_ms = 0\n"
        ),
        ..Default::default()
    })
    .await
}

async fn status(s: &Stack, token: &str) -> u16 {
    s.post(Some(token), initialize(), None)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_introspection_client_gets_access_tokens_of_its_audience_accepted_and_nothing_else() {
    let s = stack(true).await;
    let tokens = s.token(None, &s.resource).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().expect("refresh_token");
    assert_eq!(status(&s, access).await, 200, "the user's access token");
    assert_eq!(
        status(&s, refresh).await,
        401,
        "a refresh token is never a bearer token"
    );
    let other = s.token(None, OTHER_RESOURCE).await;
    assert_eq!(
        status(&s, other["access_token"].as_str().unwrap()).await,
        401,
        "an access token for another resource"
    );
    assert_eq!(status(&s, "mcpat_k1_garbage").await, 401, "garbage");
    s.stop().await;
}

#[tokio::test]
async fn an_introspector_nobody_listed_learns_nothing() {
    let s = stack(false).await;
    let access = s.access_token().await;
    // auth-service answers {"active": false} to a client that is neither the token's own client
    // nor a server of its resource: mcp-service refuses the token.
    assert_eq!(status(&s, &access).await, 401);
    s.stop().await;
}
