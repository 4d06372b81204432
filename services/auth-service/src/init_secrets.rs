//! `auth-service init-secrets --dir DIR`: generates, once, every secret a single-host deployment
//! (the top-level docker-compose.yml) needs, as files the configurations read with `file:/path`.
//! Nothing is overwritten: a second run keeps every value, so tokens, stored credentials and
//! registered clients survive restarts. Values are never printed, only file names.
//!
//! | file | what | read by |
//! |---|---|---|
//! | `token-key-k1` | auth-service token key (base64, 256 bit) | `tokens.keys[].secret` |
//! | `vault-key-k1` | token-vault encryption key (base64, 256 bit) | `encryption.keys[].secret` |
//! | `<caller>-at-<callee>.credential` | a service credential, for each of [`CREDENTIALS`] | the caller's `credential` |
//! | `<caller>-at-<callee>.sha256` | its SHA-256 (hex) | the callee's `grpc.callers[].credential_sha256` |
//! | `postgres-password` | with `--database-url` | Postgres (`POSTGRES_PASSWORD_FILE`) |
//! | `<name>` of each `--database-url NAME=URL` | the URL with that password | `database.url` |
//! | `<user>.argon2` | with `--user`: the hash of `$MCPAUTH_INIT_USER_PASSWORD` | `login.users[].password_hash` |

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

/// The internal service credentials: (caller, callee). auth-service's at token-vault carries the
/// `put` permission there, mcp-service's the `get` permission (the callee's configuration says so).
pub const CREDENTIALS: [(&str, &str); 4] = [
    ("mcp-service", "auth-service"),
    ("token-vault", "auth-service"),
    ("auth-service", "token-vault"),
    ("mcp-service", "token-vault"),
];

/// Environment variable holding the password of `--user`.
pub const USER_PASSWORD_ENV: &str = "MCPAUTH_INIT_USER_PASSWORD";

/// What to generate besides the keys and credentials.
#[derive(Debug, Default)]
pub struct Request {
    /// `(file name, URL without password)`: written with the generated Postgres password.
    pub database_urls: Vec<(String, String)>,
    /// A local login user and its password (from [`USER_PASSWORD_ENV`]).
    pub user: Option<(String, String)>,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(String),
    Kept(String),
    Updated(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Created(n) => write!(f, "created {n}"),
            Outcome::Kept(n) => write!(f, "kept {n}"),
            Outcome::Updated(n) => write!(f, "updated {n}"),
        }
    }
}

/// Parses `NAME=postgres://user@host:port/db` (no password: it is generated).
pub fn parse_database_url(arg: &str) -> Result<(String, String), String> {
    let (name, url) = arg
        .split_once('=')
        .ok_or_else(|| format!("--database-url {arg:?}: expected NAME=URL"))?;
    check_name(name)?;
    let parsed = url::Url::parse(url).map_err(|e| format!("--database-url {name}: {e}"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") || parsed.username().is_empty() {
        return Err(format!(
            "--database-url {name}: expected postgres://USER@HOST:PORT/DB"
        ));
    }
    if parsed.password().is_some() {
        return Err(format!(
            "--database-url {name}: leave the password out, it is generated"
        ));
    }
    Ok((name.to_owned(), url.to_owned()))
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "{name:?}: file names are letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// Generates what is missing in `dir` (created if needed); see the module documentation.
pub fn run(dir: &Path, req: &Request) -> Result<Vec<Outcome>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let rng = SystemRandom::new();
    let mut done = Vec::new();
    for name in ["token-key-k1", "vault-key-k1"] {
        done.push(ensure(dir, name, || Ok(random_b64(&rng, true)))?);
    }
    for (caller, callee) in CREDENTIALS {
        let base = format!("{caller}-at-{callee}");
        done.push(ensure(dir, &format!("{base}.credential"), || {
            Ok(random_b64(&rng, false))
        })?);
        let credential = read(dir, &format!("{base}.credential"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, credential.as_bytes());
        done.push(derive(
            dir,
            &format!("{base}.sha256"),
            &hex(digest.as_ref()),
        )?);
    }
    if !req.database_urls.is_empty() {
        done.push(ensure(dir, "postgres-password", || {
            Ok(random_b64(&rng, false))
        })?);
        let password = read(dir, "postgres-password")?;
        for (name, url) in &req.database_urls {
            check_name(name)?;
            let mut u = url::Url::parse(url).map_err(|e| format!("{name}: {e}"))?;
            u.set_password(Some(&password))
                .map_err(|()| format!("{name}: the URL cannot carry a password"))?;
            done.push(derive(dir, name, u.as_str())?);
        }
    }
    if let Some((user, password)) = &req.user {
        check_name(user)?;
        if password.is_empty() {
            return Err(format!(
                "--user {user}: set the password in ${USER_PASSWORD_ENV}"
            ));
        }
        let name = format!("{user}.argon2");
        // Kept while it still matches the password, so the file is stable across runs; a new
        // password replaces it.
        let current = read(dir, &name).ok();
        let matches = current.as_deref().is_some_and(|h| verify(h, password));
        if matches {
            done.push(Outcome::Kept(name));
        } else {
            write_atomically(dir, &name, &crate::login::hash_password(password))?;
            done.push(if current.is_some() {
                Outcome::Updated(name)
            } else {
                Outcome::Created(name)
            });
        }
    }
    Ok(done)
}

fn verify(hash: &str, password: &str) -> bool {
    use argon2::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// 32 random bytes: standard base64 for keys, unpadded URL-safe base64 for credentials (they
/// travel in `authorization: Bearer` headers and URLs).
fn random_b64(rng: &SystemRandom, key: bool) -> String {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes).expect("system randomness");
    if key {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read(dir: &Path, name: &str) -> Result<String, String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A generated value: written only when the file does not exist yet (or is empty).
fn ensure(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> Result<String, String>,
) -> Result<Outcome, String> {
    match read(dir, name) {
        Ok(v) if !v.is_empty() => Ok(Outcome::Kept(name.to_owned())),
        _ => {
            write_atomically(dir, name, &make()?)?;
            Ok(Outcome::Created(name.to_owned()))
        }
    }
}

/// A value computed from others: rewritten when it differs.
fn derive(dir: &Path, name: &str, value: &str) -> Result<Outcome, String> {
    match read(dir, name) {
        Ok(v) if v == value => Ok(Outcome::Kept(name.to_owned())),
        Ok(_) => write_atomically(dir, name, value).map(|()| Outcome::Updated(name.to_owned())),
        Err(_) => write_atomically(dir, name, value).map(|()| Outcome::Created(name.to_owned())),
    }
}

/// Writes `name` through a temporary file and a rename, owner-read-only (0400), so a crash
/// never leaves half a key and a reader never sees an empty file.
fn write_atomically(dir: &Path, name: &str, value: &str) -> Result<(), String> {
    let path = dir.join(name);
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o400);
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(value.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    result
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        std::env::temp_dir().join(format!("mcpauth-init-secrets-{}", uuid::Uuid::new_v4()))
    }

    fn request() -> Request {
        Request {
            database_urls: vec![
                parse_database_url("auth-database-url=postgres://mcpauth@postgres:5432/mcpauth")
                    .unwrap(),
            ],
            user: Some(("demo".into(), "first password".into())),
        }
    }

    #[test]
    fn generates_everything_once_and_keeps_it() {
        let dir = tempdir();
        let first = run(&dir, &request()).unwrap();
        assert!(
            first.iter().all(|o| matches!(o, Outcome::Created(_))),
            "{first:?}"
        );
        // 2 keys, 4 × (credential + sha256), password, 1 URL, 1 user.
        assert_eq!(first.len(), 2 + 8 + 1 + 1 + 1);
        let snapshot = |d: &Path| {
            let mut files: Vec<(String, String)> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().into_string().unwrap();
                    (name.clone(), read(d, &name).unwrap())
                })
                .collect();
            files.sort();
            files
        };
        let before = snapshot(&dir);
        let second = run(&dir, &request()).unwrap();
        assert!(
            second.iter().all(|o| matches!(o, Outcome::Kept(_))),
            "{second:?}"
        );
        assert_eq!(snapshot(&dir), before, "a second run changed a file");

        // What the configurations read: keys decode to 32 bytes, hashes match credentials.
        let key = base64::engine::general_purpose::STANDARD
            .decode(read(&dir, "token-key-k1").unwrap())
            .unwrap();
        assert_eq!(key.len(), 32);
        let cred = read(&dir, "mcp-service-at-auth-service.credential").unwrap();
        assert_eq!(
            read(&dir, "mcp-service-at-auth-service.sha256").unwrap(),
            crate::domain::token::hex(&crate::domain::token::hash(&cred))
        );
        let creds: std::collections::HashSet<String> = CREDENTIALS
            .iter()
            .map(|(a, b)| read(&dir, &format!("{a}-at-{b}.credential")).unwrap())
            .collect();
        assert_eq!(creds.len(), 4, "credentials must differ");
        let password = read(&dir, "postgres-password").unwrap();
        assert_eq!(
            read(&dir, "auth-database-url").unwrap(),
            format!("postgres://mcpauth:{password}@postgres:5432/mcpauth")
        );
        assert!(verify(
            &read(&dir, "demo.argon2").unwrap(),
            "first password"
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("token-key-k1"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o400);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_user_password_replaces_only_the_hash() {
        let dir = tempdir();
        run(&dir, &request()).unwrap();
        let key = read(&dir, "token-key-k1").unwrap();
        let mut req = request();
        req.user = Some(("demo".into(), "second password".into()));
        let out = run(&dir, &req).unwrap();
        assert!(
            out.contains(&Outcome::Updated("demo.argon2".into())),
            "{out:?}"
        );
        let hash = read(&dir, "demo.argon2").unwrap();
        assert!(verify(&hash, "second password"));
        assert!(!verify(&hash, "first password"));
        assert_eq!(read(&dir, "token-key-k1").unwrap(), key);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_hash_is_derived_from_the_kept_credential() {
        let dir = tempdir();
        run(&dir, &Request::default()).unwrap();
        let cred = read(&dir, "token-vault-at-auth-service.credential").unwrap();
        std::fs::remove_file(dir.join("token-vault-at-auth-service.sha256")).unwrap();
        let out = run(&dir, &Request::default()).unwrap();
        assert!(out.contains(&Outcome::Created(
            "token-vault-at-auth-service.sha256".into()
        )));
        assert_eq!(
            read(&dir, "token-vault-at-auth-service.credential").unwrap(),
            cred
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_arguments_are_one_line() {
        for (arg, want) in [
            ("no-equals", "expected NAME=URL"),
            ("x=mysql://u@h/db", "expected postgres://"),
            ("x=postgres://u:pw@h/db", "leave the password out"),
            ("../x=postgres://u@h/db", "file names are"),
        ] {
            let e = parse_database_url(arg).unwrap_err();
            assert!(e.contains(want), "{arg}: {e}");
            assert!(!e.contains('\n'));
        }
        let dir = tempdir();
        let req = Request {
            user: Some(("demo".into(), String::new())),
            ..Request::default()
        };
        assert!(run(&dir, &req).unwrap_err().contains(USER_PASSWORD_ENV));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
