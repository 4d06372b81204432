//! The document: what a fetched body must hold to be taken as a client's registration (exact
//! `client_id` match, required fields, safe redirect URIs, no shared secret, auth method `none`,
//! the same field bounds as dynamic registration). Pure functions of the body and its URL.

use serde_json::{Map, Value};
use url::Url;

use super::CimdError;
use super::address::is_loopback_host;
use crate::domain::redirect_uri;

/// A validated Client ID Metadata Document: the registration of a URL-named client.
#[derive(Debug, Clone)]
pub struct ClientMetadataDocument {
    /// The document URL, equal to the document's own `client_id`.
    pub client_id: String,
    pub client_name: String,
    /// Non-empty; each is https, or http on a loopback host, without fragment.
    pub redirect_uris: Vec<String>,
    /// Contains `authorization_code`.
    pub grant_types: Vec<String>,
    /// Contains `code`.
    pub response_types: Vec<String>,
    /// Always `none`: such a client has no shared secret.
    pub token_endpoint_auth_method: String,
    pub scope: Option<String>,
    /// An https URL when present.
    pub client_uri: Option<String>,
    /// An https URL when present.
    pub logo_uri: Option<String>,
    /// The whole document as fetched.
    pub raw: Value,
}

impl ClientMetadataDocument {
    /// Hosts of the redirect URIs, deduplicated in order: the consent page must show them.
    pub fn redirect_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for u in &self.redirect_uris {
            if let Some(h) = Url::parse(u)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                && !hosts.contains(&h)
            {
                hosts.push(h);
            }
        }
        hosts
    }

    /// True when every redirect URI is on a loopback host; the MCP spec asks to warn the user,
    /// since any local program could then receive the authorization code.
    pub fn has_only_loopback_redirects(&self) -> bool {
        self.redirect_uris
            .iter()
            .all(|u| Url::parse(u).is_ok_and(|u| u.host().is_some_and(|h| is_loopback_host(&h))))
    }
}

/// Validates a fetched document against the URL it came from.
pub(crate) fn parse_document(url: &str, body: &[u8]) -> Result<ClientMetadataDocument, CimdError> {
    let invalid = |m: &str| CimdError::InvalidDocument(m.to_owned());
    let raw: Value = serde_json::from_slice(body).map_err(|_| invalid("not valid json"))?;
    let obj = raw
        .as_object()
        .ok_or_else(|| invalid("not a json object"))?;
    if let Some(at) = crate::domain::input::first_control_character(&raw) {
        return Err(CimdError::InvalidDocument(format!(
            "{at} contains a control character"
        )));
    }

    let client_id = opt_string(obj, "client_id")?.ok_or_else(|| invalid("client_id is missing"))?;
    if client_id != url {
        return Err(CimdError::ClientIdMismatch);
    }
    for secret in ["client_secret", "client_secret_expires_at"] {
        if obj.contains_key(secret) {
            return Err(CimdError::InvalidDocument(format!(
                "{secret} must not be present"
            )));
        }
    }
    let client_name = opt_string(obj, "client_name")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid("client_name is missing"))?;

    use crate::domain::client_metadata as limits;
    limits::check_text("client_name", &client_name, limits::MAX_NAME_CHARS)
        .map_err(CimdError::InvalidDocument)?;
    let redirect_uris = opt_string_array(obj, "redirect_uris")?.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(invalid("redirect_uris is missing or empty"));
    }
    if redirect_uris.len() > limits::MAX_REDIRECT_URIS {
        return Err(CimdError::InvalidDocument(format!(
            "at most {} redirect_uris",
            limits::MAX_REDIRECT_URIS
        )));
    }
    for u in &redirect_uris {
        limits::check_uri_len("redirect_uris", u).map_err(CimdError::InvalidDocument)?;
    }
    for u in &redirect_uris {
        redirect_uri::validate_for_registration(u, &[])
            .map_err(|e| CimdError::InvalidDocument(format!("redirect_uris: {e}")))?;
    }

    let method =
        opt_string(obj, "token_endpoint_auth_method")?.unwrap_or_else(|| "none".to_owned());
    if method != "none" {
        return Err(CimdError::UnsupportedAuthMethod(sanitize_token(&method)));
    }
    let grant_types = opt_string_array(obj, "grant_types")?
        .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(invalid("grant_types must include authorization_code"));
    }
    // A document is an open registration: only the user-delegated grants (docs/security.md).
    // Anything else it lists is ignored, as RFC 7591 §3.2.1 lets a server replace metadata.
    let mut grant_types = grant_types;
    grant_types.retain(|g| {
        crate::http::grants::registry()
            .open_grant_types()
            .any(|o| o == g)
    });
    grant_types.dedup();
    let response_types =
        opt_string_array(obj, "response_types")?.unwrap_or_else(|| vec!["code".to_owned()]);
    if !response_types.iter().any(|r| r == "code") {
        return Err(invalid("response_types must include code"));
    }
    let scope = opt_string(obj, "scope")?;
    if scope
        .as_ref()
        .is_some_and(|s| s.len() > limits::MAX_SCOPE_BYTES)
    {
        return Err(CimdError::InvalidDocument(format!(
            "scope must be at most {} bytes",
            limits::MAX_SCOPE_BYTES
        )));
    }
    let client_uri = opt_https_url(obj, "client_uri")?;
    let logo_uri = opt_https_url(obj, "logo_uri")?;

    Ok(ClientMetadataDocument {
        client_id,
        client_name,
        redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: method,
        scope,
        client_uri,
        logo_uri,
        raw,
    })
}

/// A string member; JSON `null` counts as absent.
fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CimdError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CimdError::InvalidDocument(format!(
            "{key} must be a string"
        ))),
    }
}

fn opt_string_array(obj: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, CimdError> {
    let wrong = || CimdError::InvalidDocument(format!("{key} must be an array of strings"));
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(wrong))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong()),
    }
}

/// Display-only URLs: the consent page may link or embed them, so only https.
fn opt_https_url(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CimdError> {
    let Some(s) = opt_string(obj, key)? else {
        return Ok(None);
    };
    crate::domain::client_metadata::check_uri_len(key, &s).map_err(CimdError::InvalidDocument)?;
    let ok = Url::parse(&s).is_ok_and(|u| {
        u.scheme() == "https"
            && u.host().is_some()
            && u.username().is_empty()
            && u.password().is_none()
    });
    if ok {
        Ok(Some(s))
    } else {
        Err(CimdError::InvalidDocument(format!(
            "{key} must be an https url"
        )))
    }
}

/// Echo a document-supplied token in an error only if it is short and plain.
fn sanitize_token(s: &str) -> String {
    let plain = s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if plain {
        s.to_owned()
    } else {
        "(invalid)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cimd::test_support::{URL, doc, validate};

    fn with(key: &str, value: Value) -> Value {
        let mut d = doc(URL);
        d[key] = value;
        d
    }

    fn without(key: &str) -> Value {
        let mut d = doc(URL);
        d.as_object_mut().expect("object").remove(key);
        d
    }

    fn invalid(r: Result<ClientMetadataDocument, CimdError>) -> String {
        match r {
            Err(CimdError::InvalidDocument(m)) => m,
            other => panic!("expected InvalidDocument, got {other:?}"),
        }
    }

    #[test]
    fn documents_are_open_registrations_with_bounded_fields() {
        // A document cannot make its client a machine client.
        let d = validate(with(
            "grant_types",
            serde_json::json!(["authorization_code", "client_credentials", "refresh_token"]),
        ))
        .expect("ok");
        assert_eq!(d.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(
            invalid(validate(with("client_name", "n".repeat(201).into()))),
            "client_name must be at most 200 printable characters"
        );
        assert!(validate(with("client_name", "n".repeat(200).into())).is_ok());
        let many: Vec<String> = (0..21)
            .map(|i| format!("https://app.example.com/cb{i}"))
            .collect();
        assert_eq!(
            invalid(validate(with("redirect_uris", serde_json::json!(many)))),
            "at most 20 redirect_uris"
        );
        let long = format!("https://app.example.com/{}", "p".repeat(2048));
        assert_eq!(
            invalid(validate(with(
                "redirect_uris",
                serde_json::json!([long.clone()])
            ))),
            "redirect_uris must be at most 2048 bytes"
        );
        assert_eq!(
            invalid(validate(with("logo_uri", long.into()))),
            "logo_uri must be at most 2048 bytes"
        );
        assert_eq!(
            invalid(validate(with("scope", "a ".repeat(600).into()))),
            "scope must be at most 1024 bytes"
        );
    }

    #[test]
    fn document_validation() {
        assert!(validate(doc(URL)).is_ok());
        assert!(matches!(
            parse_document(URL, b"not json"),
            Err(CimdError::InvalidDocument(_))
        ));
        assert_eq!(invalid(parse_document(URL, b"[1]")), "not a json object");
        assert_eq!(
            invalid(validate(without("client_id"))),
            "client_id is missing"
        );
        assert!(matches!(
            validate(with(
                "client_id",
                "https://app.example.com/client.json?".into()
            )),
            Err(CimdError::ClientIdMismatch)
        ));
        assert!(matches!(
            validate(with(
                "client_id",
                "https://APP.example.com/client.json".into()
            )),
            Err(CimdError::ClientIdMismatch)
        ));
        assert_eq!(
            invalid(validate(without("client_name"))),
            "client_name is missing"
        );
        assert_eq!(
            invalid(validate(with("client_name", "  ".into()))),
            "client_name is missing"
        );
        assert_eq!(
            invalid(validate(with("client_name", 5.into()))),
            "client_name must be a string"
        );
        assert_eq!(
            invalid(validate(without("redirect_uris"))),
            "redirect_uris is missing or empty"
        );
        assert_eq!(
            invalid(validate(with("redirect_uris", serde_json::json!([])))),
            "redirect_uris is missing or empty"
        );
        assert_eq!(
            invalid(validate(with(
                "redirect_uris",
                "https://a.example/cb".into()
            ))),
            "redirect_uris must be an array of strings"
        );
        for bad in [
            "https://a.example/cb#f",
            "http://a.example/cb",
            "/cb",
            "javascript:alert(1)",
            "https://u@a.example/cb",
        ] {
            let m = invalid(validate(with("redirect_uris", serde_json::json!([bad]))));
            assert!(m.starts_with("redirect_uris: "), "{bad}: {m}");
        }
        assert!(
            validate(with(
                "redirect_uris",
                serde_json::json!(["http://localhost:9/cb"])
            ))
            .is_ok()
        );
        assert_eq!(
            invalid(validate(with("client_secret", "s".into()))),
            "client_secret must not be present"
        );
        assert_eq!(
            invalid(validate(with("client_secret_expires_at", 0.into()))),
            "client_secret_expires_at must not be present"
        );
        assert_eq!(
            invalid(validate(with(
                "grant_types",
                serde_json::json!(["client_credentials"])
            ))),
            "grant_types must include authorization_code"
        );
        assert_eq!(
            invalid(validate(with(
                "response_types",
                serde_json::json!(["token"])
            ))),
            "response_types must include code"
        );
        assert_eq!(
            invalid(validate(with("logo_uri", "http://a.example/l.png".into()))),
            "logo_uri must be an https url"
        );
        assert_eq!(
            invalid(validate(with("client_uri", "javascript:alert(1)".into()))),
            "client_uri must be an https url"
        );
        assert!(
            validate(with("logo_uri", Value::Null))
                .expect("null is absent")
                .logo_uri
                .is_none()
        );

        let d = validate(with(
            "grant_types",
            serde_json::json!(["authorization_code", "refresh_token"]),
        ))
        .expect("ok");
        assert_eq!(d.grant_types, ["authorization_code", "refresh_token"]);
        let d = validate(with(
            "redirect_uris",
            serde_json::json!(["http://127.0.0.1/cb", "http://localhost:1/cb"]),
        ))
        .expect("ok");
        assert!(d.has_only_loopback_redirects());
    }

    #[test]
    fn only_none_auth_method() {
        assert_eq!(
            validate(with("token_endpoint_auth_method", "none".into()))
                .expect("ok")
                .token_endpoint_auth_method,
            "none"
        );
        for m in [
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
        ] {
            match validate(with("token_endpoint_auth_method", m.into())) {
                Err(e @ CimdError::UnsupportedAuthMethod(_)) => {
                    assert!(e.to_string().contains(m), "{e}");
                }
                other => panic!("{m}: {other:?}"),
            }
        }
        match validate(with("token_endpoint_auth_method", "<script>".into())) {
            Err(CimdError::UnsupportedAuthMethod(shown)) => assert_eq!(shown, "(invalid)"),
            other => panic!("{other:?}"),
        }
    }
}
