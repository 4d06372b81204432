//! RFC 9068 JWT access tokens for a resource configured with `token_format = "jwt"`, checked
//! by a JWT library we did not write (`jsonwebtoken`) against the keys served at `jwks_uri`;
//! key rotation; tampering; revocation at introspection (HTTP and gRPC); the sealed format
//! still the default for every other resource.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use serde_json::{Value, json};

use crate::harness::*;

pub const JWT_RESOURCE: &str = "https://jwt.example/mcp";

fn es256_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    auth_service::domain::jwt::pkcs8_pem(der.as_ref())
}

fn ed25519_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    auth_service::domain::jwt::pkcs8_pem(der.as_ref())
}

/// The JWT resource, the signing keys `(kid, pem)` and which one signs.
fn jwt_toml(keys: &[(&str, &str)], current: &str) -> String {
    let mut t = format!(
        "\n[[resources]]\nuri = \"{JWT_RESOURCE}\"\nscopes = [\"jwt:read\", \"jwt:write\"]\ndefault_scopes = [\"jwt:read\"]\ntoken_format = \"jwt\"\n"
    );
    t += &format!("\n[tokens]\nsigning_key = \"{current}\"\n");
    for (kid, pem) in keys {
        t += &format!("\n[[tokens.signing_keys]]\nid = \"{kid}\"\nkey = '''\n{pem}'''\n");
    }
    t
}

async fn client_credentials(s: &TestServer, resource: &str) -> Value {
    let (status, body, _) = s
        .token_basic(
            STATIC_CLIENT,
            STATIC_SECRET,
            &[("grant_type", "client_credentials"), ("resource", resource)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn jwks(s: &TestServer) -> JwkSet {
    let r = s.http.get(s.url("/jwks")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let body: Value = r.json().await.unwrap();
    for k in body["keys"].as_array().unwrap() {
        assert_eq!(k["use"], "sig", "{k}");
        assert!(k["kid"].is_string() && k["alg"].is_string(), "{k}");
        assert!(k.get("d").is_none(), "a private key part is published: {k}");
    }
    serde_json::from_value(body).unwrap()
}

/// Verifies `token` the way a third-party resource server would: `typ`, the key named by
/// `kid` in the JWKS, signature, `iss`, `aud`, `exp`.
fn third_party_verify(set: &JwkSet, token: &str, issuer: &str, aud: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(format!("typ {:?}", header.typ));
    }
    let jwk = set
        .find(header.kid.as_deref().ok_or("no kid")?)
        .ok_or("unknown kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[aud]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// The same token with one claim changed and the original signature.
fn tamper(token: &str, claim: &str, value: Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims[claim] = value;
    format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    )
}

#[tokio::test]
async fn a_jwt_resource_gets_rfc9068_tokens_that_a_third_party_library_verifies() {
    let s = TestServer::start_with(Options {
        toml: jwt_toml(&[("es1", &es256_pem())], "es1"),
        ..Default::default()
    })
    .await;
    let issuer = s.issuer();
    let meta: Value = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["jwks_uri"], format!("{issuer}/jwks"));
    let set = jwks(&s).await;
    assert_eq!(set.keys.len(), 1);

    let body = client_credentials(&s, JWT_RESOURCE).await;
    let at = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(at).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some("es1"));
    let claims = third_party_verify(&set, at, &issuer, JWT_RESOURCE).unwrap();
    assert_eq!(claims["sub"], STATIC_CLIENT);
    assert_eq!(claims["client_id"], STATIC_CLIENT);
    assert_eq!(claims["scope"], "jwt:read");
    assert_eq!(claims["aud"], JWT_RESOURCE);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        body["expires_in"].as_i64().unwrap()
    );
    // Another audience or issuer is refused by the third party too.
    assert!(third_party_verify(&set, at, &issuer, RESOURCE).is_err());
    assert!(third_party_verify(&set, at, "https://evil.example", JWT_RESOURCE).is_err());

    // Introspection describes it like a sealed token, over HTTP and gRPC.
    let intro = s.assert_active(at).await;
    assert_eq!(intro["aud"], JWT_RESOURCE);
    assert_eq!(intro["jti"], claims["jti"]);
    assert_eq!(intro["iss"], issuer);
    assert!(s.grpc_introspect(at, JWT_RESOURCE).await.active);
    assert!(!s.grpc_introspect(at, RESOURCE).await.active);

    // Tampered: refused by the third party and inactive here.
    for forged in [
        tamper(at, "scope", json!("jwt:read jwt:write")),
        tamper(at, "sub", json!("someone-else")),
        tamper(at, "exp", json!(claims["exp"].as_i64().unwrap() + 3600)),
    ] {
        assert!(third_party_verify(&set, &forged, &issuer, JWT_RESOURCE).is_err());
        s.assert_inactive(&forged).await;
    }

    // Other resources keep the sealed format by default.
    let sealed = client_credentials(&s, RESOURCE).await;
    let sealed = sealed["access_token"].as_str().unwrap();
    assert!(sealed.starts_with("mcpat_k1_"), "{sealed}");
    s.assert_active(sealed).await;

    // Revoked by its client (RFC 7009): inactive over HTTP and gRPC.
    let r = s
        .http
        .post(s.url("/revoke"))
        .basic_auth(STATIC_CLIENT, Some(STATIC_SECRET))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.assert_inactive(at).await;
    s.assert_active(sealed).await;
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_grant_ends_its_jwt_access_tokens() {
    let s = TestServer::start_with(Options {
        toml: jwt_toml(&[("ed1", &ed25519_pem())], "ed1"),
        ..Default::default()
    })
    .await;
    let client = s.public_client().await;
    let code = mcpauth_testkit::authorize_code(
        &s.http,
        &s.base,
        &client,
        &[("state", "s1"), ("resource", JWT_RESOURCE)],
    )
    .await;
    let body =
        mcpauth_testkit::redeem_code(&s.http, &s.base, &client, &code, Some(JWT_RESOURCE)).await;
    let at = body["access_token"].as_str().unwrap();
    let rt = body["refresh_token"].as_str().unwrap();
    let set = jwks(&s).await;
    let claims = third_party_verify(&set, at, &s.issuer(), JWT_RESOURCE).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(at).unwrap().alg,
        jsonwebtoken::Algorithm::EdDSA
    );
    assert!(claims["grant_id"].is_string(), "{claims}");
    assert_eq!(claims["client_id"], client);
    s.assert_active(at).await;
    // A refreshed access token for the JWT resource is a JWT too.
    let (status, refreshed, _) = s.refresh(&client, rt, &[]).await;
    assert_eq!(status, 200, "{refreshed}");
    let at2 = refreshed["access_token"].as_str().unwrap();
    third_party_verify(&set, at2, &s.issuer(), JWT_RESOURCE).unwrap();
    let rt2 = refreshed["refresh_token"].as_str().unwrap();
    // Revoking the refresh token ends the grant: both access tokens go inactive.
    assert_eq!(s.revoke_as(&client, rt2).await.status(), 200);
    s.assert_inactive(at).await;
    s.assert_inactive(at2).await;
    s.stop().await;
}

/// Rotation as docs/tokens.md describes it, on two replicas of one deployment (one issuer):
/// the old replica signs with `a`; the new one lists `a` and `b` and signs with `b`. A token of
/// either key verifies against the new JWKS and is active at the new replica; once `a` is
/// dropped (its tokens expired), a token it signed is refused.
#[tokio::test]
async fn rotation_keeps_old_tokens_valid_while_new_ones_use_the_new_key() {
    let (a, b) = (es256_pem(), ed25519_pem());
    let issuer = "http://127.0.0.1:1".to_owned();
    let env = || vec![("MCPAUTH__ISSUER", issuer.clone())];
    let old = TestServer::start_with(Options {
        toml: jwt_toml(&[("a", &a)], "a"),
        env: env(),
    })
    .await;
    let t_a = client_credentials(&old, JWT_RESOURCE).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let new = TestServer::start_on(
        old.shared_db(),
        old.prefix.clone(),
        Options {
            toml: jwt_toml(&[("a", &a), ("b", &b)], "b"),
            env: env(),
        },
    )
    .await;
    let t_b = client_credentials(&new, JWT_RESOURCE).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        jsonwebtoken::decode_header(&t_b).unwrap().kid.as_deref(),
        Some("b")
    );
    let set = jwks(&new).await;
    let kids: Vec<_> = set
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert_eq!(kids, ["b", "a"]);
    for t in [&t_a, &t_b] {
        third_party_verify(&set, t, &issuer, JWT_RESOURCE).unwrap();
        new.assert_active(t).await;
    }
    // The old replica's cached JWKS does not know `b`: that is why a new key is listed (and
    // published) for the JWKS cache lifetime before it signs.
    assert!(third_party_verify(&jwks(&old).await, &t_b, &issuer, JWT_RESOURCE).is_err());
    new.stop_keep_db().await;
    let db = old.shared_db();
    let prefix = old.prefix.clone();
    old.stop_keep_db().await;
    let retired = TestServer::start_on(
        db,
        prefix,
        Options {
            toml: jwt_toml(&[("b", &b)], "b"),
            env: env(),
        },
    )
    .await;
    retired.assert_active(&t_b).await;
    retired.assert_inactive(&t_a).await;
    assert!(third_party_verify(&jwks(&retired).await, &t_a, &issuer, JWT_RESOURCE).is_err());
    retired.stop().await;
}

#[tokio::test]
async fn a_jwt_resource_without_signing_keys_is_a_configuration_error_outside_dev_mode() {
    let toml = format!(
        "[[resources]]\nuri = \"{JWT_RESOURCE}\"\nscopes = [\"a\"]\ntoken_format = \"jwt\"\n"
    );
    let file = std::env::temp_dir().join(format!("jwt-cfg-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&file, test_toml(&toml)).unwrap();
    let mut env = test_env("postgres://x@127.0.0.1/x", "p");
    env.insert("MCPAUTH__DEV_MODE".into(), "false".into());
    let err = auth_service::config::Config::load(Some(&file), &env)
        .unwrap_err()
        .to_string();
    let _ = std::fs::remove_file(&file);
    assert!(
        err.contains("token_format = \"jwt\" needs tokens.signing_keys"),
        "{err}"
    );
}
