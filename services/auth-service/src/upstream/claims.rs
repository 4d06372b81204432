//! Reading a user's identity out of upstream JSON: a dotted path such as `result.sys_id` walks
//! nested objects (ServiceNow wraps its answers in `result`). Plain Rust, no I/O.

use serde_json::Value;

/// The value at `path` as a non-empty string: strings as they are, integers in decimal.
/// Anything else (objects, arrays, booleans, empty strings) is not an identifier.
pub fn string_at(doc: &Value, path: &str) -> Option<String> {
    let mut v = doc;
    for part in path.split('.') {
        v = v.as_object()?.get(part)?;
    }
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_nested_objects() {
        let doc = json!({"sub": "u1", "result": {"sys_id": "abc", "n": 42, "empty": "", "o": {}}});
        assert_eq!(string_at(&doc, "sub").as_deref(), Some("u1"));
        assert_eq!(string_at(&doc, "result.sys_id").as_deref(), Some("abc"));
        assert_eq!(string_at(&doc, "result.n").as_deref(), Some("42"));
        assert_eq!(string_at(&doc, "result.empty"), None);
        assert_eq!(string_at(&doc, "result.o"), None);
        assert_eq!(string_at(&doc, "result.missing"), None);
        assert_eq!(string_at(&doc, "sub.deeper"), None);
        assert_eq!(string_at(&json!(["x"]), "0"), None);
    }
}
