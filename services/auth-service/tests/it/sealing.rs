//! Access-token sealing: every token under a key of its own (format v2, no per-key message
//! limit), tokens of the earlier format and of rotated-out keys still open, and the count of
//! tokens sealed per key id on `/metrics` (the input to the rotation schedule).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::harness::*;

/// The value of the sample line `name{labels}`, if present.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

async fn metrics_text(s: &TestServer) -> String {
    s.http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn client_credentials(s: &TestServer) -> String {
    let (status, body, _) = s
        .token_basic(
            STATIC_CLIENT,
            STATIC_SECRET,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn access_tokens_are_sealed_per_token_and_counted_per_key() {
    let s = TestServer::start().await;
    let mut issued = Vec::new();
    for _ in 0..3 {
        issued.push(client_credentials(&s).await);
    }
    let (_, body) = s.login(None).await;
    issued.push(body["access_token"].as_str().unwrap().to_owned());
    let mut salts = std::collections::HashSet::new();
    for at in &issued {
        let body = at.strip_prefix("mcpat_k1_").expect(at);
        let raw = URL_SAFE_NO_PAD.decode(body).unwrap();
        // Format byte 2, a 24-byte salt from which this token's own key is derived.
        assert_eq!(raw[0], 2, "{at}");
        assert!(salts.insert(raw[1..25].to_vec()), "salt repeated");
        s.assert_active(at).await;
    }
    let text = metrics_text(&s).await;
    assert_eq!(
        sample(
            &text,
            "mcpauth_tokens_sealed_total{key_id=\"k1\",format=\"v2\"}"
        ),
        Some(4.0),
        "{text}"
    );
    s.stop().await;
}

/// Across a rotation: the server seals under the new current key (counted under its id), and
/// still opens tokens of the previous key — in the v2 format and in the v1 format of earlier
/// releases — while that key stays in the ring. A token under a key that is not in the ring,
/// or altered, is inactive.
#[tokio::test]
async fn tokens_of_previous_keys_and_of_the_v1_format_stay_valid() {
    use auth_service::domain::token::{AccessClaims, AccessFormat};
    let k2 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]);
    let s = TestServer::start_with(Options {
        toml: format!("\n[[tokens.keys]]\nid = \"k2\"\nsecret = \"{k2}\"\n"),
        env: vec![("MCPAUTH__TOKENS__CURRENT_KEY", "k2".into())],
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    let claims = AccessClaims {
        jti: "ab".repeat(16),
        sub: STATIC_CLIENT.into(),
        client_id: STATIC_CLIENT.into(),
        grant_id: None,
        aud: RESOURCE.into(),
        scope: "mcp:tools.read".into(),
        iat: now,
        exp: now + 600,
        act: None,
    };
    // k1 (the test ring's key) is now a previous key: both formats sealed under it open.
    let v1 = test_key_ring()
        .with_format(AccessFormat::V1)
        .seal_access(&claims);
    let v2 = test_key_ring().seal_access(&claims);
    for t in [&v1, &v2] {
        assert!(t.starts_with("mcpat_k1_"), "{t}");
        let intro = s.assert_active(t).await;
        assert_eq!(intro["client_id"], STATIC_CLIENT);
        s.assert_inactive(&mangle(t)).await;
    }
    // A key that is not (or no longer) in the ring opens nothing.
    let k9 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [5u8; 32]);
    let gone = auth_service::domain::token::KeyRing::new(&[("k9".into(), k9)], "k9")
        .unwrap()
        .seal_access(&claims);
    s.assert_inactive(&gone).await;

    let new = client_credentials(&s).await;
    assert!(new.starts_with("mcpat_k2_"), "{new}");
    s.assert_active(&new).await;
    let text = metrics_text(&s).await;
    assert_eq!(
        sample(
            &text,
            "mcpauth_tokens_sealed_total{key_id=\"k2\",format=\"v2\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("key_id=\"k1\""), "{text}");
    s.stop().await;
}

/// `tokens.access_token_format = "v1"` (first step of a rolling upgrade) seals the format of
/// earlier releases, counted as such; the tokens open as usual.
#[tokio::test]
async fn the_v1_switch_seals_the_earlier_format() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__TOKENS__ACCESS_TOKEN_FORMAT", "v1".into())],
        ..Default::default()
    })
    .await;
    let at = client_credentials(&s).await;
    s.assert_active(&at).await;
    // Opened by a ring that seals v2 (what the next step of the upgrade runs).
    let claims = test_key_ring()
        .open_access(&at, chrono::Utc::now().timestamp())
        .unwrap();
    let raw = URL_SAFE_NO_PAD
        .decode(at.strip_prefix("mcpat_k1_").unwrap())
        .unwrap();
    let json_len = serde_json::to_vec(&claims).unwrap().len();
    assert_eq!(raw.len(), 12 + json_len + 16, "nonce ‖ ciphertext ‖ tag");
    let text = metrics_text(&s).await;
    assert_eq!(
        sample(
            &text,
            "mcpauth_tokens_sealed_total{key_id=\"k1\",format=\"v1\"}"
        ),
        Some(1.0),
        "{text}"
    );
    s.stop().await;
}
