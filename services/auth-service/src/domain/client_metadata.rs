//! Bounds on everything a client supplies about itself (RFC 7591 registrations, client ID
//! metadata documents, configured clients) and on the `state` of an authorization request:
//! every value here is stored, shown on a page or sent back, so none may be unbounded.
//! Which grant types a client may have is the grant registry's (`http::grants::registry`).

/// Longest `client_id` of a configured client (a CIMD URL has the document's own bound).
pub const MAX_CLIENT_ID_BYTES: usize = 255;
/// Longest `client_name`, in characters (it is shown on the consent page).
pub const MAX_NAME_CHARS: usize = 200;
/// Longest URI (`redirect_uris`, `client_uri`, `logo_uri`, `tos_uri`, `policy_uri`).
pub const MAX_URI_BYTES: usize = 2048;
/// Most `redirect_uris` of one client.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Most `contacts` of one client, and the longest contact in characters.
pub const MAX_CONTACTS: usize = 10;
pub const MAX_CONTACT_CHARS: usize = 256;
/// Longest `software_id` and `software_version`, in characters.
pub const MAX_SOFTWARE_CHARS: usize = 200;
/// Longest `scope` value.
pub const MAX_SCOPE_BYTES: usize = 1024;
/// Most `grant_types` / `response_types` entries (there are only a handful of real ones).
pub const MAX_TYPES: usize = 10;
/// Longest `state` of an authorization request: it is kept with the pending authorization and
/// sent back on the redirect.
pub const MAX_STATE_BYTES: usize = 1024;

/// A printable text of at most `max` characters (names, versions, contacts).
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(format!(
            "{field} must be at most {max} printable characters"
        ));
    }
    Ok(())
}

/// A URI of at most [`MAX_URI_BYTES`].
pub fn check_uri_len(field: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_URI_BYTES {
        return Err(format!("{field} must be at most {MAX_URI_BYTES} bytes"));
    }
    Ok(())
}

/// `contacts`: at most [`MAX_CONTACTS`] of at most [`MAX_CONTACT_CHARS`] characters each.
pub fn check_contacts(contacts: &[String]) -> Result<(), String> {
    if contacts.len() > MAX_CONTACTS {
        return Err(format!("at most {MAX_CONTACTS} contacts"));
    }
    for c in contacts {
        check_text("contacts", c, MAX_CONTACT_CHARS)?;
    }
    Ok(())
}

/// `state` of an authorization request.
pub fn check_state(state: &str) -> Result<(), String> {
    if state.len() > MAX_STATE_BYTES {
        return Err(format!("state must be at most {MAX_STATE_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_named() {
        assert!(check_text("client_name", &"é".repeat(200), MAX_NAME_CHARS).is_ok());
        let e = check_text("client_name", &"é".repeat(201), MAX_NAME_CHARS).unwrap_err();
        assert_eq!(e, "client_name must be at most 200 printable characters");
        assert!(check_text("software_id", "a\u{7}b", MAX_SOFTWARE_CHARS).is_err());
        assert!(check_uri_len("logo_uri", &"a".repeat(MAX_URI_BYTES)).is_ok());
        assert!(check_uri_len("logo_uri", &"a".repeat(MAX_URI_BYTES + 1)).is_err());
        assert!(check_contacts(&vec!["a@b.example".to_owned(); MAX_CONTACTS]).is_ok());
        assert!(check_contacts(&vec!["a@b.example".to_owned(); MAX_CONTACTS + 1]).is_err());
        assert!(check_contacts(&["x".repeat(MAX_CONTACT_CHARS + 1)]).is_err());
        assert!(check_state(&"s".repeat(MAX_STATE_BYTES)).is_ok());
        assert!(check_state(&"s".repeat(MAX_STATE_BYTES + 1)).is_err());
    }
}
