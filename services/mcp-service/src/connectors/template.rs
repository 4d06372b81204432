//! URL templates of connector tools: `https://api.example/repos/{owner}/{repo}`. Placeholders
//! live in the path only (never the scheme, host, port or query, so arguments cannot redirect a
//! call to another server) and each value is percent-encoded into exactly one path segment.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(String),
}

/// A parsed URL template.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    parts: Vec<Part>,
    origin: url::Origin,
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

impl UrlTemplate {
    /// Parses and checks a template; the error says what is wrong (without the key).
    pub fn parse(template: &str) -> Result<Self, String> {
        let Some(scheme_end) = template.find("://") else {
            return Err(format!("{template:?} is not an absolute URL"));
        };
        let after = scheme_end + 3;
        let path_start = template[after..]
            .find(['/', '?', '#'])
            .map_or(template.len(), |i| after + i);
        let query_start = template[path_start..]
            .find(['?', '#'])
            .map_or(template.len(), |i| path_start + i);
        if template.contains('#') {
            return Err("a URL template has no fragment".into());
        }
        let mut parts = vec![];
        let mut literal = String::new();
        let mut chars = template.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err("an unclosed '{' in the template".into());
                    }
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(format!(
                            "placeholder {{{name}}}: names use letters, digits and '_'"
                        ));
                    }
                    if i < path_start || i >= query_start {
                        return Err(format!(
                            "placeholder {{{name}}} must be in the path (not the scheme, host, port or query)"
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Placeholder(name));
                }
                '}' => return Err("a '}' without '{' in the template".into()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        // The template with every placeholder filled must be a URL we are willing to call.
        let sample: String = parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.as_str(),
                Part::Placeholder(_) => "x",
            })
            .collect();
        let url = url::Url::parse(&sample).map_err(|e| format!("not a valid URL: {e}"))?;
        let host = url.host().ok_or("the URL has no host")?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => return Err("must be https (http only for loopback hosts)".into()),
            s => return Err(format!("scheme {s:?} is not http(s)")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not allowed".into());
        }
        Ok(Self {
            origin: url.origin(),
            parts,
        })
    }

    /// Placeholder names, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(n) => Some(n.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Fills the placeholders from `args`; every value becomes one percent-encoded segment.
    pub fn render(&self, args: &serde_json::Map<String, Value>) -> Result<url::Url, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Placeholder(name) => {
                    let value = match args.get(name) {
                        Some(Value::String(s)) => s.clone(),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                        Some(Value::Null) | None => {
                            return Err(format!("argument `{name}` is required"));
                        }
                        Some(_) => {
                            return Err(format!(
                                "argument `{name}` must be a string, number or boolean"
                            ));
                        }
                    };
                    // "." and ".." (also percent-encoded) are dot segments to URL parsers.
                    if value.is_empty() || value == "." || value == ".." {
                        return Err(format!(
                            "argument `{name}` cannot be empty, \".\" or \"..\" (it is a URL path segment)"
                        ));
                    }
                    out.push_str(&encode_segment(&value));
                }
            }
        }
        let url = url::Url::parse(&out).map_err(|e| format!("the URL is not valid: {e}"))?;
        if url.origin() != self.origin {
            return Err("the arguments changed the URL's origin".into());
        }
        Ok(url)
    }
}

/// Percent-encodes everything except RFC 3986 unreserved characters, so a value is one path
/// segment (`/`, `?`, `#`, `%` and spaces are all encoded).
pub fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn placeholders_become_encoded_path_segments() {
        let t = UrlTemplate::parse("https://api.example/repos/{owner}/{repo}/issues?state=open")
            .unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["owner", "repo"]);
        let u = t
            .render(&args(json!({"owner": "octo cat", "repo": "a/b?c#d%e"})))
            .unwrap();
        assert_eq!(
            u.as_str(),
            "https://api.example/repos/octo%20cat/a%2Fb%3Fc%23d%25e/issues?state=open"
        );
        let u = t.render(&args(json!({"owner": 42, "repo": true}))).unwrap();
        assert_eq!(u.path(), "/repos/42/true/issues");
        let u = t
            .render(&args(json!({"owner": "ünï", "repo": "x"})))
            .unwrap();
        assert_eq!(u.path(), "/repos/%C3%BCn%C3%AF/x/issues");
    }

    #[test]
    fn dot_segments_and_missing_values_are_refused() {
        let t = UrlTemplate::parse("https://api.example/repos/{owner}/{repo}").unwrap();
        for bad in ["..", ".", ""] {
            let e = t
                .render(&args(json!({"owner": bad, "repo": "r"})))
                .unwrap_err();
            assert!(e.contains("owner"), "{e}");
        }
        // Encoded dots stay inside the segment: no traversal.
        let u = t
            .render(&args(json!({"owner": "...", "repo": "%2e%2e"})))
            .unwrap();
        assert_eq!(u.path(), "/repos/.../%252e%252e");
        assert!(t.render(&args(json!({"owner": "o"}))).is_err());
        assert!(
            t.render(&args(json!({"owner": {"a": 1}, "repo": "r"})))
                .is_err()
        );
    }

    #[test]
    fn placeholders_outside_the_path_are_refused() {
        for bad in [
            "https://{host}/x",
            "https://api.example:{port}/x",
            "https://api.example/x?q={q}",
            "{scheme}://api.example/x",
        ] {
            assert!(UrlTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in [
            "api.example/x",
            "https://api.example/{unclosed",
            "https://api.example/x}",
            "https://api.example/{}",
            "https://api.example/{a-b}",
            "https://api.example/x#frag",
            "ftp://api.example/x",
            "http://api.example/x",
            "https://user:pw@api.example/x",
        ] {
            assert!(UrlTemplate::parse(bad).is_err(), "{bad}");
        }
        assert!(UrlTemplate::parse("http://127.0.0.1:9/x/{a}").is_ok());
        assert!(UrlTemplate::parse("http://localhost/x").is_ok());
        assert!(UrlTemplate::parse("http://[::1]:8/x").is_ok());
    }
}
