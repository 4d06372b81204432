//! Static bearer keys for service-to-service use and simple deployments. Only SHA-256 hashes
//! are configured; comparison is constant-time.

use futures_util::future::BoxFuture;
use subtle::ConstantTimeEq;

use super::cache::token_key;
use crate::auth::{Principal, TokenVerifier, VerifyError};
use crate::config::StaticKeyConfig;

pub struct StaticKeys {
    keys: Vec<([u8; 32], Principal)>,
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk.first()? as &u8).to_ascii_lowercase();
        let lo = (chunk.get(1)? as &u8).to_ascii_lowercase();
        let v = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        *out.get_mut(i)? = v(hi)? << 4 | v(lo)?;
    }
    (s.len() == 64).then_some(out)
}

impl StaticKeys {
    pub fn new(cfg: &[StaticKeyConfig]) -> anyhow::Result<Self> {
        let mut keys = Vec::with_capacity(cfg.len());
        for (i, k) in cfg.iter().enumerate() {
            let hash = unhex(&k.key_sha256).ok_or_else(|| {
                anyhow::anyhow!("verifier.static_keys[{i}].key_sha256: must be 64 hex characters")
            })?;
            keys.push((
                hash,
                Principal {
                    subject: k.name.clone(),
                    client_id: k.name.clone(),
                    scopes: k.scopes.iter().cloned().collect(),
                    expires_at: i64::MAX,
                    token_id: None,
                    grant_id: None,
                    access_token: None,
                },
            ));
        }
        Ok(Self { keys })
    }
}

impl TokenVerifier for StaticKeys {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(async move {
            let presented = token_key(token);
            // Compare against every key so timing does not reveal which one was close.
            let mut found = None;
            for (hash, principal) in &self.keys {
                if bool::from(presented.ct_eq(hash)) {
                    found = Some(principal);
                }
            }
            found.cloned().ok_or(VerifyError::Inactive)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[tokio::test]
    async fn accepts_only_configured_keys() {
        let cfg = vec![StaticKeyConfig {
            name: "ci-bot".into(),
            key_sha256: hex(&token_key("s3cret-key")),
            scopes: vec!["mcp:tools.read".into()],
        }];
        let v = StaticKeys::new(&cfg).unwrap();
        let p = v.verify("s3cret-key").await.unwrap();
        assert_eq!(p.subject, "ci-bot");
        assert!(p.scopes.contains("mcp:tools.read"));
        assert_eq!(v.verify("s3cret-kez").await, Err(VerifyError::Inactive));
        assert_eq!(v.verify("").await, Err(VerifyError::Inactive));
    }
}
