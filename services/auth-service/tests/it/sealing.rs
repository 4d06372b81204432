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
