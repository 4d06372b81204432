//! PKCE (RFC 7636), S256 only: OAuth 2.1 §4.1.1 forbids `plain`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// Why a code challenge was refused at `/authorize`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge is required (PKCE)")]
    MissingChallenge,
    #[error("code_challenge_method must be S256")]
    UnsupportedMethod,
    #[error("code_challenge must be 43 base64url characters (S256)")]
    MalformedChallenge,
}

/// Validates the `/authorize` PKCE parameters and returns the challenge to bind to the code.
/// A missing method defaults to `plain` in RFC 7636, which we refuse.
pub fn validate_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<String, PkceError> {
    let challenge = challenge
        .filter(|c| !c.is_empty())
        .ok_or(PkceError::MissingChallenge)?;
    if method != Some("S256") {
        return Err(PkceError::UnsupportedMethod);
    }
    let valid = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(PkceError::MalformedChallenge);
    }
    Ok(challenge.to_owned())
}

/// A verifier is 43–128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
fn verifier_is_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
pub fn verify(verifier: &str, challenge: &str) -> bool {
    if !verifier_is_well_formed(verifier) {
        return false;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert!(verify(VERIFIER, CHALLENGE));
    }

    #[test]
    fn wrong_verifier_fails() {
        let mut v = VERIFIER.to_owned();
        v.replace_range(0..1, "e");
        assert!(!verify(&v, CHALLENGE));
    }

    #[test]
    fn short_or_illegal_verifier_fails() {
        assert!(!verify("short", CHALLENGE));
        assert!(!verify(&format!("{VERIFIER}!"), CHALLENGE));
    }

    #[test]
    fn plain_and_missing_are_refused() {
        assert_eq!(
            validate_challenge(None, Some("S256")),
            Err(PkceError::MissingChallenge)
        );
        assert_eq!(
            validate_challenge(Some(CHALLENGE), Some("plain")),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(
            validate_challenge(Some(CHALLENGE), None),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(
            validate_challenge(Some("abc"), Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
        assert_eq!(
            validate_challenge(Some(CHALLENGE), Some("S256")).unwrap(),
            CHALLENGE
        );
    }
}
