//! Resource indicators (RFC 8707): the protected resources this server issues tokens for, and
//! the canonical comparison of a requested `resource` against them.

use url::Url;

/// Canonical form used to compare resource identifiers: scheme and host lower-cased (the `url`
/// crate does that), no fragment, and no lone trailing `/` on an empty path. Returns `None` for
/// anything that is not an absolute URI without a fragment.
pub fn canonicalize(raw: &str) -> Option<String> {
    let url = Url::parse(raw).ok()?;
    if url.fragment().is_some() || url.cannot_be_a_base() {
        return None;
    }
    let mut out = format!("{}://", url.scheme());
    out.push_str(url.host_str()?);
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    if url.path() != "/" {
        out.push_str(url.path());
    }
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// Finds the configured resource that `requested` designates, returning the configured string
/// byte for byte (it becomes the token's audience).
pub fn find<'a>(configured: &'a [String], requested: &str) -> Option<&'a str> {
    if let Some(exact) = configured.iter().find(|c| c.as_str() == requested) {
        return Some(exact);
    }
    let wanted = canonicalize(requested)?;
    configured
        .iter()
        .find(|c| canonicalize(c).as_deref() == Some(wanted.as_str()))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canonicalize("HTTPS://MCP.Example.com/mcp").unwrap(),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            canonicalize("https://mcp.example.com/").unwrap(),
            "https://mcp.example.com"
        );
        assert_eq!(
            canonicalize("https://mcp.example.com:443/mcp").unwrap(),
            "https://mcp.example.com/mcp"
        );
        assert!(canonicalize("https://mcp.example.com/mcp#x").is_none());
        assert!(canonicalize("mcp").is_none());
    }

    #[test]
    fn finds_configured_resource() {
        let cfg = vec!["http://127.0.0.1:8081/mcp".to_owned()];
        assert_eq!(
            find(&cfg, "http://127.0.0.1:8081/mcp"),
            Some("http://127.0.0.1:8081/mcp")
        );
        assert_eq!(
            find(&cfg, "HTTP://127.0.0.1:8081/mcp"),
            Some("http://127.0.0.1:8081/mcp")
        );
        assert_eq!(find(&cfg, "http://127.0.0.1:8081/mcp/other"), None);
        assert_eq!(find(&cfg, "https://other.example/mcp"), None);
    }
}
