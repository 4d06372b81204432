//! Redirect URIs: what may be registered (https or loopback, no fragment) and how a request's
//! `redirect_uri` is matched (exact string, except that a loopback redirect may use any port,
//! RFC 8252 §7.3).

use url::{Host, Url};

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect_uri is not an absolute URI")]
    NotAbsolute,
    #[error("redirect_uri must not contain a fragment")]
    Fragment,
    #[error("redirect_uri must use https, or http on a loopback host")]
    InsecureScheme,
    #[error("redirect_uri must not contain user info")]
    UserInfo,
    #[error("redirect_uri host is not allowed by this server's registration policy")]
    HostNotAllowed,
}

/// True for `localhost`, `127.0.0.0/8` and `::1`.
pub fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks a redirect URI offered at registration. `allowed_hosts`, when not empty, lists the
/// only non-loopback hosts that may be used.
pub fn validate_for_registration(
    raw: &str,
    allowed_hosts: &[String],
) -> Result<Url, RedirectUriError> {
    let url = Url::parse(raw).map_err(|_| RedirectUriError::NotAbsolute)?;
    if url.fragment().is_some() || raw.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectUriError::UserInfo);
    }
    let host = url.host().ok_or(RedirectUriError::NotAbsolute)?;
    let loopback = is_loopback_host(&host);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(RedirectUriError::InsecureScheme),
    }
    if !loopback && !allowed_hosts.is_empty() {
        let h = host.to_string();
        if !allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(&h)) {
            return Err(RedirectUriError::HostNotAllowed);
        }
    }
    Ok(url)
}

/// Finds the registered URI that `requested` matches. Exact string comparison; for an http
/// loopback registration the port may differ (native apps bind an ephemeral port).
pub fn find_match<'a>(registered: &'a [String], requested: &str) -> Option<&'a str> {
    if let Some(exact) = registered.iter().find(|r| r.as_str() == requested) {
        return Some(exact);
    }
    let req = Url::parse(requested).ok()?;
    if req.scheme() != "http" || !req.host().is_some_and(|h| is_loopback_host(&h)) {
        return None;
    }
    registered.iter().map(String::as_str).find(|r| {
        Url::parse(r).is_ok_and(|reg| {
            reg.scheme() == "http"
                && reg.host() == req.host()
                && reg.path() == req.path()
                && reg.query() == req.query()
                && reg.fragment().is_none()
                && req.fragment().is_none()
                && req.username().is_empty()
                && req.password().is_none()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_accepts_https_and_loopback_http() {
        assert!(validate_for_registration("https://app.example.com/cb", &[]).is_ok());
        assert!(validate_for_registration("http://127.0.0.1:3000/cb", &[]).is_ok());
        assert!(validate_for_registration("http://localhost/cb", &[]).is_ok());
        assert!(validate_for_registration("http://[::1]:9/cb", &[]).is_ok());
    }

    #[test]
    fn registration_refuses_unsafe_uris() {
        use RedirectUriError::*;
        assert_eq!(
            validate_for_registration("http://app.example.com/cb", &[]),
            Err(InsecureScheme)
        );
        assert_eq!(
            validate_for_registration("https://a.example/cb#x", &[]),
            Err(Fragment)
        );
        assert_eq!(
            validate_for_registration("/relative", &[]),
            Err(NotAbsolute)
        );
        assert_eq!(
            validate_for_registration("javascript:alert(1)", &[]),
            Err(NotAbsolute)
        );
        assert_eq!(
            validate_for_registration("https://u:p@a.example/cb", &[]),
            Err(UserInfo)
        );
        assert_eq!(
            validate_for_registration("myapp:/cb", &[]),
            Err(NotAbsolute)
        );
    }

    #[test]
    fn registration_policy_limits_hosts_but_not_loopback() {
        let allowed = vec!["app.example.com".to_owned()];
        assert!(validate_for_registration("https://app.example.com/cb", &allowed).is_ok());
        assert_eq!(
            validate_for_registration("https://evil.example/cb", &allowed),
            Err(RedirectUriError::HostNotAllowed)
        );
        assert!(validate_for_registration("http://127.0.0.1:1/cb", &allowed).is_ok());
    }

    #[test]
    fn matching_is_exact() {
        let reg = vec!["https://app.example.com/cb".to_owned()];
        assert!(find_match(&reg, "https://app.example.com/cb").is_some());
        assert!(find_match(&reg, "https://app.example.com/cb/").is_none());
        assert!(find_match(&reg, "https://APP.example.com/cb").is_none());
        assert!(find_match(&reg, "https://app.example.com/cb?x=1").is_none());
        assert!(find_match(&reg, "https://app.example.com:443/cb").is_none());
        assert!(find_match(&reg, "https://app.example.com.evil/cb").is_none());
    }

    #[test]
    fn loopback_port_may_vary_but_nothing_else() {
        let reg = vec![
            "http://127.0.0.1/callback".to_owned(),
            "http://localhost:8000/cb".to_owned(),
        ];
        assert_eq!(
            find_match(&reg, "http://127.0.0.1:51234/callback"),
            Some("http://127.0.0.1/callback")
        );
        assert_eq!(
            find_match(&reg, "http://localhost:9999/cb"),
            Some("http://localhost:8000/cb")
        );
        assert!(find_match(&reg, "http://127.0.0.1:51234/other").is_none());
        assert!(find_match(&reg, "http://127.0.0.2:51234/callback").is_none());
        assert!(find_match(&reg, "http://localhost:1/cb#frag").is_none());
        assert!(find_match(&reg, "https://127.0.0.1:51234/callback").is_none());
    }
}
