//! mcp-service in `jwt` verifier mode in front of our own auth-service, whose resource is
//! configured with `token_format = "jwt"`: RFC 9068 tokens are checked locally against the
//! served `jwks_uri`, and revocations published on auth-service's feed (by token, grant and
//! user) are honoured although no introspection happens.

use std::time::{Duration, Instant};

use auth_service::store::revocations::{Revocation, RevocationKind};

use crate::harness::{Stack, StackOptions, initialize};

async fn jwt_stack() -> Stack {
    Stack::start_with(StackOptions {
        resource_toml: "token_format = \"jwt\"".into(),
        mcp_env: vec![("MCPAUTH__VERIFIER__MODE", "jwt".into())],
        mcp_toml: "[verifier.jwt]\nissuer = \"{issuer}\"\njwks_uri = \"{issuer}/jwks\"\n".into(),
        ..Default::default()
    })
    .await
}

/// Waits (up to 5 s, for the event to cross Redis) until mcp-service answers `status`.
async fn until_status(s: &Stack, at: &str, status: u16) {
    let started = Instant::now();
    loop {
        let got = s.post_status(Some(at), initialize(), None).await;
        if got == status {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still {got}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn our_jwts_are_accepted_locally_and_refused_once_revoked() {
    let s = jwt_stack().await;
    let tokens: Vec<String> =
        futures_util::future::join_all((0..4).map(|_| s.token(None, &s.resource)))
            .await
            .into_iter()
            .map(|t| t["access_token"].as_str().unwrap().to_owned())
            .collect();
    for at in &tokens {
        assert!(at.starts_with("eyJ"), "a JWT: {at}");
        assert_eq!(s.post_status(Some(at), initialize(), None).await, 200);
    }
    // A token for another resource, or altered, is refused.
    let other = s.token(None, crate::harness::OTHER_RESOURCE).await;
    let other = other["access_token"].as_str().unwrap();
    assert_eq!(s.post_status(Some(other), initialize(), None).await, 401);
    let mut forged = tokens[0].clone();
    forged.insert_str(forged.find('.').unwrap() + 1, "eyJ");
    assert_eq!(s.post_status(Some(&forged), initialize(), None).await, 401);

    let tokens_svc = &s.auth.as_ref().unwrap().state.tokens;
    let claims: Vec<_> = tokens
        .iter()
        .map(|t| {
            tokens_svc
                .validate_access(t)
                .expect("auth-service accepts its JWT")
        })
        .collect();
    // By jti.
    tokens_svc
        .revoke(RevocationKind::Token, &claims[0].jti, claims[0].exp)
        .await
        .unwrap();
    until_status(&s, &tokens[0], 401).await;
    // By grant (the `grant_id` claim).
    let grant = claims[1].grant_id.as_deref().unwrap().parse().unwrap();
    tokens_svc.revoke_grant(grant, "test").await.unwrap();
    until_status(&s, &tokens[1], 401).await;
    // By user, for tokens issued at or before the revocation.
    tokens_svc
        .publish_revocation(Revocation {
            kind: RevocationKind::User,
            id: claims[2].sub.clone(),
            expires_at: claims[2].exp,
            issued_before: Some(claims[2].iat),
        })
        .await
        .unwrap();
    until_status(&s, &tokens[2], 401).await;
    // Not covered by any of them (all four tokens are one dev user's: the user revocation
    // covered every token of that user issued by then, so the fourth is refused too).
    assert_eq!(
        s.post_status(Some(&tokens[3]), initialize(), None).await,
        401
    );
    // A token issued after the user revocation (the user signed in again) is accepted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = s.access_token().await;
    assert_eq!(s.post_status(Some(&fresh), initialize(), None).await, 200);
    s.stop().await;
}
