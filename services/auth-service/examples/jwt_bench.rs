//! In-process cost of RFC 9068 JWT access tokens (scripts/bench.sh, `BENCH_ONLY=jwt`): signing
//! and local verification per second on one thread, for each key type, with the same code
//! auth-service runs (`domain::jwt`). Prints one JSON line per (algorithm, operation).
//!
//!   cargo run --release -p auth-service --example jwt_bench [seconds per case, default 2]

use std::time::{Duration, Instant};

use auth_service::domain::jwt::{JwtKeys, pkcs8_pem};
use auth_service::domain::token::AccessClaims;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};

const ISS: &str = "https://as.example";
const RSA_PEM: &str = include_str!("../tests/fixtures/jwt-test-rsa2048.pem");

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let rng = SystemRandom::new();
    let es = pkcs8_pem(
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref(),
    );
    let ed = pkcs8_pem(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = AccessClaims {
        jti: "0123456789abcdef0123456789abcdef".into(),
        sub: "2f0e6c1a-6d3b-4d8e-9a43-3f6d2b8a9c10".into(),
        client_id: "https://client.example/metadata.json".into(),
        grant_id: Some("7d1c2b7e-8f7a-4b9e-a1f3-5e2d4c6b8a90".into()),
        aud: "https://mcp.example.com/mcp".into(),
        scope: "mcp:tools.read mcp:tools.write".into(),
        iat: now,
        exp: now + 3600,
        act: None,
    };
    for (alg, pem) in [("ES256", es), ("EdDSA", ed), ("RS256", RSA_PEM.to_owned())] {
        let keys = JwtKeys::new(&[("k".into(), pem)], "k").unwrap();
        let token = keys.sign(ISS, &claims);
        let (n, d) = measure(secs, || {
            std::hint::black_box(keys.sign(ISS, &claims));
        });
        report(alg, "sign", n, d, token.len());
        let (n, d) = measure(secs, || {
            std::hint::black_box(keys.verify(ISS, &token, now).unwrap());
        });
        report(alg, "verify", n, d, token.len());
    }
}

fn measure(secs: u64, mut f: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    (n, start.elapsed())
}

fn report(alg: &str, op: &str, n: u64, d: Duration, token_len: usize) {
    let per_sec = n as f64 / d.as_secs_f64();
    println!(
        "{{\"name\":\"jwt_{op}_{alg}_in_process\",\"ops_per_sec\":{per_sec:.0},\"us_per_op\":{:.2},\"threads\":1,\"token_bytes\":{token_len}}}",
        1e6 / per_sec
    );
}
