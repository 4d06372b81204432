//! The upstream credential as the vault holds it, and the decisions about it: when to refresh,
//! whether it is still usable, how it is sealed for its record. Plain Rust, no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, KeyRing, RecordBinding, Sealed};

/// Tokens as the upstream token endpoint issued them. Only ever stored sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderTokens {
    pub access_token: String,
    /// Empty when the upstream issued none.
    #[serde(default)]
    pub refresh_token: String,
    /// Seconds since the epoch; 0 when unknown.
    #[serde(default)]
    pub expires_at: i64,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub token_type: String,
}

impl fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderTokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &if self.refresh_token.is_empty() {
                    ""
                } else {
                    "[redacted]"
                },
            )
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl ProviderTokens {
    /// Whether the access token should be refreshed now: it expires within `buffer_secs`.
    /// An unknown expiry (0) never triggers a refresh.
    pub fn needs_refresh(&self, now: i64, buffer_secs: i64) -> bool {
        self.expires_at != 0 && self.expires_at - buffer_secs <= now
    }

    /// Whether the access token is past its expiry (an unknown expiry counts as valid).
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }

    /// The tokens after a refresh: the upstream may omit a new refresh token (keep the old one)
    /// or the scope (unchanged).
    pub fn refreshed(&self, fresh: ProviderTokens) -> ProviderTokens {
        ProviderTokens {
            refresh_token: if fresh.refresh_token.is_empty() {
                self.refresh_token.clone()
            } else {
                fresh.refresh_token
            },
            scopes: if fresh.scopes.is_empty() {
                self.scopes.clone()
            } else {
                fresh.scopes
            },
            token_type: if fresh.token_type.is_empty() {
                self.token_type.clone()
            } else {
                fresh.token_type
            },
            ..fresh
        }
    }

    /// Seals these tokens for `(user, provider, version)`.
    pub fn seal(
        &self,
        keys: &KeyRing,
        user_id: &str,
        provider: &str,
        version: i64,
    ) -> Result<Sealed, CryptoError> {
        let json = serde_json::to_vec(self).expect("tokens serialize");
        keys.seal(
            RecordBinding {
                user_id,
                provider,
                version,
            },
            &json,
        )
    }

    /// Opens tokens sealed for `(user, provider, version)`.
    pub fn open(
        keys: &KeyRing,
        user_id: &str,
        provider: &str,
        version: i64,
        sealed: &Sealed,
    ) -> Result<ProviderTokens, CryptoError> {
        let plain = keys.open(
            RecordBinding {
                user_id,
                provider,
                version,
            },
            sealed,
        )?;
        serde_json::from_slice(&plain).map_err(|_| CryptoError::Malformed("payload"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(expires_at: i64) -> ProviderTokens {
        ProviderTokens {
            access_token: "at".into(),
            refresh_token: "rt".into(),
            expires_at,
            scopes: vec!["repo".into()],
            token_type: "Bearer".into(),
        }
    }

    #[test]
    fn refresh_window() {
        assert!(!tokens(1_000).needs_refresh(900, 60));
        assert!(tokens(1_000).needs_refresh(940, 60));
        assert!(tokens(1_000).needs_refresh(2_000, 60));
        assert!(!tokens(0).needs_refresh(2_000, 60), "unknown expiry");
        assert!(!tokens(1_000).expired(999));
        assert!(tokens(1_000).expired(1_000));
        assert!(!tokens(0).expired(i64::MAX));
    }

    #[test]
    fn refresh_keeps_what_the_upstream_omitted() {
        let old = tokens(1_000);
        let fresh = ProviderTokens {
            access_token: "at2".into(),
            refresh_token: String::new(),
            expires_at: 5_000,
            scopes: vec![],
            token_type: String::new(),
        };
        let merged = old.refreshed(fresh);
        assert_eq!(merged.access_token, "at2");
        assert_eq!(merged.refresh_token, "rt");
        assert_eq!(merged.scopes, vec!["repo".to_owned()]);
        assert_eq!(merged.expires_at, 5_000);
        let rotated = old.refreshed(ProviderTokens {
            refresh_token: "rt2".into(),
            ..tokens(6_000)
        });
        assert_eq!(rotated.refresh_token, "rt2");
    }

    #[test]
    fn sealed_for_one_record_only() {
        let keys = KeyRing::new(&[("k".into(), vec![3; 32])], "k").unwrap();
        let t = tokens(1_000);
        let sealed = t.seal(&keys, "u1", "github", 3).unwrap();
        assert_eq!(
            ProviderTokens::open(&keys, "u1", "github", 3, &sealed).unwrap(),
            t
        );
        assert_eq!(
            ProviderTokens::open(&keys, "u2", "github", 3, &sealed),
            Err(CryptoError::Decrypt)
        );
        assert!(!format!("{t:?}").contains("at\""));
        assert!(!format!("{t:?}").contains("rt"));
    }
}
