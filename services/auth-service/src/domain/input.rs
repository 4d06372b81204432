//! Input that no OAuth or registration value may carry. RFC 6749 Appendix A limits every
//! protocol parameter to visible ASCII and spaces (URIs and UTF-8 names add no control
//! characters), and Postgres refuses a NUL byte in any text value: a control character is
//! answered with a 400 at the edge, before it reaches a lookup, a row or the audit trail.

use serde_json::Value;

/// Whether `s` holds a control character (C0, DEL or C1).
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Whether `s`, once percent-decoded (a URL path), holds a C0 control character or DEL.
pub fn percent_decoded_has_control(s: &str) -> bool {
    let bytes = s.as_bytes();
    let control = |b: u8| b < 0x20 || b == 0x7f;
    let mut i = 0;
    while i < bytes.len() {
        // Two hex digits exactly: `from_str_radix` alone also takes a sign (`%+a` is no escape).
        let b = if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && hex.bytes().all(|d| d.is_ascii_hexdigit())
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            i += 3;
            b
        } else {
            i += 1;
            bytes[i - 1]
        };
        if control(b) {
            return true;
        }
    }
    false
}

/// The path (`contacts[1]`, `jwks.keys[0].n`) of the first string or object key of `value`
/// that holds a control character.
pub fn first_control_character(value: &Value) -> Option<String> {
    fn walk(value: &Value, at: &str) -> Option<String> {
        match value {
            Value::String(s) => has_control(s).then(|| at.to_owned()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, &format!("{at}[{i}]"))),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                if has_control(k) {
                    Some(if at.is_empty() {
                        "(a key)".into()
                    } else {
                        format!("{at} (a key)")
                    })
                } else {
                    walk(v, &here)
                }
            }),
            _ => None,
        }
    }
    walk(value, "")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn control_characters_are_found_wherever_they_are() {
        assert!(has_control("a\0b"));
        assert!(has_control("tab\there"));
        assert!(has_control("del\u{7f}"));
        assert!(has_control("c1\u{85}"));
        assert!(!has_control("Ünïcödé client ✓ name"));
        assert!(percent_decoded_has_control("/register/a%00b"));
        assert!(percent_decoded_has_control("/register/%7F"));
        assert!(percent_decoded_has_control("/connect/x%0a"));
        assert!(!percent_decoded_has_control("/register/abc%20d%2F%"));
        assert!(!percent_decoded_has_control("/r/%zz%4"));
        assert_eq!(
            first_control_character(&json!({"client_name": "fine"})),
            None
        );
        assert_eq!(
            first_control_character(&json!({"contacts": ["a@b.c", "x\u{0}y"]})).as_deref(),
            Some("contacts[1]")
        );
        assert_eq!(
            first_control_character(&json!({"jwks": {"keys": [{"n": "\r\n"}]}})).as_deref(),
            Some("jwks.keys[0].n")
        );
        assert_eq!(
            first_control_character(&json!({"a\u{1}": 1})).as_deref(),
            Some("(a key)")
        );
    }
}
