//! RFC 9068 JWT access tokens, for resources configured with `token_format = "jwt"`, so that
//! resource servers we did not write can validate our tokens locally against `jwks_uri`.
//!
//! * Header `{"alg", "typ": "at+jwt", "kid"}`; claims `iss`, `sub`, `aud`, `exp`, `iat`, `jti`,
//!   `client_id`, `scope`, and `grant_id` when the token belongs to a grant (so that a grant
//!   revocation reaches verifiers that follow our revocation feed).
//! * Signed with one asymmetric key (ES256, EdDSA or RS256: never HMAC, so publishing the
//!   verification key gives nothing away). Signing and verifying go straight to `ring` with the
//!   key parsed once at start-up, not through a JWT library that re-parses the key per call.
//! * Rotation: several keys may be listed, one of them signs; every listed key is published in
//!   the JWKS and verifies, so tokens signed by a retired key stay valid until they expire
//!   (docs/tokens.md, "JWT signing keys").

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::token::{AccessClaims, Actor, TokenError};

/// The `typ` header of RFC 9068 access tokens.
pub const TYP: &str = "at+jwt";

/// Signature algorithms a signing key may use (decided by the key's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit modulus or more: for verifiers that know no other.
    Rs256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
            Alg::Rs256 => "RS256",
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::EdDsa => &signature::ED25519,
            Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        }
    }
}

enum Signer {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// One signing key: its private half (the active key signs with it) and what is published.
struct SigningKey {
    kid: String,
    alg: Alg,
    signer: Signer,
    /// The key in the form `ring` verifies with (EC point, Ed25519 key, or RSAPublicKey DER).
    public: Vec<u8>,
    /// The public JWK (RFC 7517) served at `jwks_uri`.
    jwk: Value,
}

/// Invalid signing-key configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtKeyError {
    #[error("tokens.signing_keys: key id {0:?} must be 1-64 characters of [A-Za-z0-9._-]")]
    BadId(String),
    #[error("tokens.signing_keys: key id {0:?} appears twice")]
    DuplicateId(String),
    #[error(
        "tokens.signing_keys: key {0:?} is not a PKCS#8 PEM (\"BEGIN PRIVATE KEY\") or private JWK of a P-256, Ed25519 or RSA (≥ 2048 bit) key"
    )]
    BadKey(String),
    #[error("tokens.signing_key: {0:?} is not in tokens.signing_keys")]
    UnknownCurrent(String),
    #[error("tokens.signing_keys: at least one key is required")]
    Empty,
}

/// The JWT signing keys: the current one signs, every listed one verifies and is published.
#[derive(Clone)]
pub struct JwtKeys {
    current: Arc<SigningKey>,
    keys: Arc<HashMap<String, Arc<SigningKey>>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("current", &self.current.kid)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Claims of a JWT access token (RFC 9068 §2.2).
#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: String,
    client_id: String,
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant_id: Option<String>,
    /// The RFC 8693 §4.1 actor chain of an exchanged token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    act: Option<ActClaim>,
}

/// `act` as RFC 8693 §4.1 spells it (`sub`, nested `act`); the sealed format abbreviates it.
#[derive(Serialize, Deserialize)]
struct ActClaim {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    act: Option<Box<ActClaim>>,
}

impl ActClaim {
    fn from_actor(a: &Actor) -> Self {
        Self {
            sub: a.sub.clone(),
            act: a
                .act
                .as_deref()
                .map(|inner| Box::new(Self::from_actor(inner))),
        }
    }
    fn into_actor(self) -> Actor {
        Actor {
            sub: self.sub,
            act: self.act.map(|inner| Box::new(inner.into_actor())),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// The DER of a PEM block (`-----BEGIN PRIVATE KEY-----` … `-----END PRIVATE KEY-----`).
fn pem_pkcs8(text: &str) -> Option<Vec<u8>> {
    let body = text
        .trim()
        .strip_prefix("-----BEGIN PRIVATE KEY-----")?
        .trim_end()
        .strip_suffix("-----END PRIVATE KEY-----")?;
    let b64: String = body.split_whitespace().collect();
    STANDARD.decode(b64).ok()
}

fn b64url(v: &Value, field: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(v.get(field)?.as_str()?).ok()
}

/// A private JWK of an EC P-256 or Ed25519 key (RSA keys: PEM only).
fn signer_from_jwk(v: &Value) -> Option<Signer> {
    let rng = SystemRandom::new();
    match (v.get("kty")?.as_str()?, v.get("crv")?.as_str()?) {
        ("EC", "P-256") => {
            let mut point = vec![0x04];
            point.extend(b64url(v, "x")?);
            point.extend(b64url(v, "y")?);
            EcdsaKeyPair::from_private_key_and_public_key(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &b64url(v, "d")?,
                &point,
                &rng,
            )
            .ok()
            .map(Signer::Ec)
        }
        ("OKP", "Ed25519") => {
            Ed25519KeyPair::from_seed_and_public_key(&b64url(v, "d")?, &b64url(v, "x")?)
                .ok()
                .map(Signer::Ed)
        }
        _ => None,
    }
}

fn signer_from_pkcs8(der: &[u8]) -> Option<Signer> {
    let rng = SystemRandom::new();
    if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
    {
        return Some(Signer::Ec(k));
    }
    // `openssl genpkey -algorithm ed25519` writes PKCS#8 v1 (no public key inside).
    if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        return Some(Signer::Ed(k));
    }
    RsaKeyPair::from_pkcs8(der).ok().map(Signer::Rsa)
}

impl SigningKey {
    fn new(kid: &str, signer: Signer) -> Self {
        let (alg, public, jwk) = match &signer {
            Signer::Ec(k) => {
                let p = k.public_key().as_ref().to_vec();
                let jwk = json!({"kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
                (Alg::Es256, p, jwk)
            }
            Signer::Ed(k) => {
                let p = k.public_key().as_ref().to_vec();
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&p)});
                (Alg::EdDsa, p, jwk)
            }
            Signer::Rsa(k) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(k.public());
                let jwk = json!({"kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)});
                (Alg::Rs256, k.public().as_ref().to_vec(), jwk)
            }
        };
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.name());
        jwk["use"] = json!("sig");
        Self {
            kid: kid.to_owned(),
            alg,
            signer,
            public,
            jwk,
        }
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Vec<u8> {
        match &self.signer {
            Signer::Ec(k) => k
                .sign(rng, message)
                .expect("ECDSA signing of an in-memory message")
                .as_ref()
                .to_vec(),
            Signer::Ed(k) => k.sign(message).as_ref().to_vec(),
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, rng, message, &mut sig)
                    .expect("RSA signing of an in-memory message");
                sig
            }
        }
    }
}

fn valid_kid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl JwtKeys {
    /// Builds the key set from `(kid, PKCS#8 PEM or private JWK)` pairs; `current` signs.
    pub fn new(keys: &[(String, String)], current: &str) -> Result<Self, JwtKeyError> {
        if keys.is_empty() {
            return Err(JwtKeyError::Empty);
        }
        let mut map = HashMap::new();
        for (kid, material) in keys {
            if !valid_kid(kid) {
                return Err(JwtKeyError::BadId(kid.clone()));
            }
            let signer = if material.trim_start().starts_with('{') {
                serde_json::from_str::<Value>(material)
                    .ok()
                    .and_then(|v| signer_from_jwk(&v))
            } else {
                pem_pkcs8(material).and_then(|der| signer_from_pkcs8(&der))
            }
            .ok_or_else(|| JwtKeyError::BadKey(kid.clone()))?;
            if map
                .insert(kid.clone(), Arc::new(SigningKey::new(kid, signer)))
                .is_some()
            {
                return Err(JwtKeyError::DuplicateId(kid.clone()));
            }
        }
        let current = map
            .get(current)
            .cloned()
            .ok_or_else(|| JwtKeyError::UnknownCurrent(current.to_owned()))?;
        Ok(Self {
            current,
            keys: Arc::new(map),
            rng: SystemRandom::new(),
        })
    }

    /// One random ES256 key: dev mode and tests, where nothing must survive a restart.
    pub fn ephemeral() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("system randomness is available");
        Self::new(&[("dev".to_owned(), pkcs8_pem(pkcs8.as_ref()))], "dev")
            .expect("a generated key parses")
    }

    /// The id of the key that signs new tokens.
    pub fn current_id(&self) -> &str {
        &self.current.kid
    }

    /// The JWK Set served at `jwks_uri`: every listed key, the signing one first.
    pub fn jwks(&self) -> Value {
        let mut keys = vec![self.current.jwk.clone()];
        let mut rest: Vec<_> = self
            .keys
            .values()
            .filter(|k| k.kid != self.current.kid)
            .collect();
        rest.sort_by(|a, b| a.kid.cmp(&b.kid));
        keys.extend(rest.into_iter().map(|k| k.jwk.clone()));
        json!({ "keys": keys })
    }

    /// Signs `claims` as an RFC 9068 access token issued by `iss`.
    pub fn sign(&self, iss: &str, claims: &AccessClaims) -> String {
        let key = &self.current;
        let header = json!({"alg": key.alg.name(), "typ": TYP, "kid": key.kid});
        let body = Claims {
            iss: iss.to_owned(),
            sub: claims.sub.clone(),
            aud: claims.aud.clone(),
            exp: claims.exp,
            iat: claims.iat,
            jti: claims.jti.clone(),
            client_id: claims.client_id.clone(),
            scope: claims.scope.clone(),
            grant_id: claims.grant_id.clone(),
            act: claims.act.as_deref().map(ActClaim::from_actor),
        };
        let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).expect("claims serialize")));
        let sig = key.sign(&self.rng, out.as_bytes());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        out
    }

    /// Verifies a token this server signed: `typ`, a listed `kid` with its own `alg`, the
    /// signature, `iss`, and expiry at `now`. Revocation is the caller's (as for sealed tokens).
    pub fn verify(&self, iss: &str, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.typ.as_deref() != Some(TYP) {
            return Err(TokenError::Malformed);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.keys.get(k))
            .ok_or(TokenError::UnknownKey)?;
        // The key decides the algorithm; a header naming another one is refused (no `none`,
        // no algorithm confusion).
        if header.alg != key.alg.name() {
            return Err(TokenError::BadSeal);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        let signed = &token[..h.len() + 1 + p.len()];
        UnparsedPublicKey::new(key.alg.verification(), &key.public)
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| TokenError::BadSeal)?;
        let c: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if c.iss != iss {
            return Err(TokenError::BadSeal);
        }
        if c.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(AccessClaims {
            jti: c.jti,
            sub: c.sub,
            client_id: c.client_id,
            grant_id: c.grant_id,
            aud: c.aud,
            scope: c.scope,
            iat: c.iat,
            exp: c.exp,
            act: c.act.map(|a| Box::new(a.into_actor())),
        })
    }
}

/// Whether `token` has the shape of a JWS compact serialization (three base64url parts whose
/// header is a JSON object), as opposed to our sealed `mcpat_…` tokens.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|&b| b == b'.').count() == 2
}

/// PKCS#8 DER as PEM (what `auth-service init-secrets` writes and `tokens.signing_keys` reads).
pub fn pkcs8_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
