//! Login providers: who the user at `/authorize` is. The dev provider logs a fixed user in
//! without a password (loopback-only dev mode); the local provider checks argon2 password
//! hashes from configuration; the upstream provider delegates to an OpenID Connect or OAuth 2.0
//! server (`crate::upstream`, flow in `http::upstream`).

use std::collections::HashMap;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::config::{LoginConfig, LoginProviderKind};

/// A user as a login provider vouches for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIdentity {
    /// Provider name, stored with the user (`dev`, `local`).
    pub provider: &'static str,
    /// The provider's stable id for the user.
    pub subject: String,
    pub username: String,
}

/// The configured login provider.
#[derive(Clone)]
pub enum LoginProvider {
    Dev {
        username: String,
    },
    Local {
        users: Arc<HashMap<String, String>>,
    },
    /// Delegated to the named `upstream.providers` entry.
    Upstream {
        provider: String,
    },
}

/// A syntactically valid hash used to spend the same time on unknown usernames.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1d0EcqRRxv1z0ZYX7LVl0gT9sAkxYkbm1Ow7Ws2QzJY";

impl LoginProvider {
    pub fn from_config(cfg: &LoginConfig) -> Self {
        match cfg.provider {
            LoginProviderKind::Dev => LoginProvider::Dev {
                username: cfg.dev_user.clone(),
            },
            LoginProviderKind::Local => LoginProvider::Local {
                users: Arc::new(
                    cfg.users
                        .iter()
                        .map(|u| (u.username.clone(), u.password_hash.expose().to_owned()))
                        .collect(),
                ),
            },
            LoginProviderKind::Upstream => LoginProvider::Upstream {
                provider: cfg.upstream_provider.clone(),
            },
        }
    }

    /// The dev provider logs its user in without any interaction.
    pub fn automatic_identity(&self) -> Option<LoginIdentity> {
        match self {
            LoginProvider::Dev { username } => Some(LoginIdentity {
                provider: "dev",
                subject: username.clone(),
                username: username.clone(),
            }),
            LoginProvider::Local { .. } | LoginProvider::Upstream { .. } => None,
        }
    }

    /// The upstream provider users log in with, if login is delegated.
    pub fn upstream_provider(&self) -> Option<&str> {
        match self {
            LoginProvider::Upstream { provider } => Some(provider),
            _ => None,
        }
    }

    /// Dev mode approves every client without a consent screen.
    pub fn auto_consent(&self) -> bool {
        matches!(self, LoginProvider::Dev { .. })
    }

    /// Checks a username and password (argon2 on a blocking thread). Unknown users cost the
    /// same time as a wrong password, so the form does not reveal which usernames exist.
    pub async fn verify_password(&self, username: &str, password: &str) -> Option<LoginIdentity> {
        let LoginProvider::Local { users } = self else {
            return None;
        };
        let known = users.get(username).cloned();
        let hash = known.clone().unwrap_or_else(|| DUMMY_HASH.to_owned());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        (ok && known.is_some()).then(|| LoginIdentity {
            provider: "local",
            subject: username.to_owned(),
            username: username.to_owned(),
        })
    }
}

/// Hashes a password for `login.users` (`auth-service hash-password`).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .expect("randomness");
    let salt = SaltString::encode_b64(&salt).expect("16-byte salt encodes");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with default params")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_provider_checks_passwords() {
        let hash = hash_password("correct horse");
        let p = LoginProvider::Local {
            users: Arc::new(HashMap::from([("alice".to_owned(), hash)])),
        };
        assert_eq!(
            p.verify_password("alice", "correct horse")
                .await
                .unwrap()
                .subject,
            "alice"
        );
        assert!(p.verify_password("alice", "wrong").await.is_none());
        assert!(
            p.verify_password("mallory", "correct horse")
                .await
                .is_none()
        );
        assert!(p.automatic_identity().is_none());
        assert!(!p.auto_consent());
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
