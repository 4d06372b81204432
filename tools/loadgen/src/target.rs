//! The loopback guard: this machine's policy forbids generating load against anything but the
//! local host, so every target is checked here and the tool then connects to exactly the address
//! that was checked (never re-resolving a name behind the guard's back).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, bail};
use http::Uri;

/// A validated target: the loopback socket address to connect to and the URI it came from.
#[derive(Debug, Clone)]
pub struct Target {
    /// The loopback address every connection goes to.
    pub addr: SocketAddr,
    /// The URI as given on the command line (scheme `http`, loopback host).
    pub uri: Uri,
}

/// Whether `ip` is a loopback address: `127.0.0.0/8`, `::1`, or their IPv4-mapped IPv6 form.
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Checks a host as written in a URI (IP literal, bracketed IPv6 literal, or the name
/// `localhost`). Returns the IP when the host is a literal, `None` for `localhost` (which the
/// caller resolves and checks again), and an error for anything else.
pub fn check_host(host: &str) -> Result<Option<IpAddr>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if is_loopback_ip(ip) {
            return Ok(Some(ip));
        }
        bail!(
            "refusing non-loopback target {host}: load may only target 127.0.0.0/8, ::1 or localhost"
        );
    }
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(None);
    }
    bail!("refusing target host {host:?}: load may only target 127.0.0.0/8, ::1 or localhost")
}

/// Parses `url` (scheme `http`, TLS is not supported), checks that its host is loopback and
/// resolves it to the socket address every connection will use. `localhost` is resolved through
/// the system resolver and accepted only if *every* address it yields is loopback.
pub async fn resolve(url: &str) -> Result<Target> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            bail!("unsupported scheme {other:?} in {url:?}: only plain http:// is supported")
        }
        None => bail!("URL {url:?} has no scheme: write http://127.0.0.1:PORT/..."),
    }
    let authority = uri
        .authority()
        .with_context(|| format!("URL {url:?} has no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let addr = match check_host(authority.host())? {
        Some(ip) => SocketAddr::new(ip, port),
        None => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((authority.host(), port))
                .await
                .with_context(|| format!("cannot resolve {}", authority.host()))?
                .collect();
            pick_loopback(authority.host(), &addrs)?
        }
    };
    Ok(Target { addr, uri })
}

/// Picks the address to use among those a name resolved to, refusing the name unless all of
/// them are loopback (a hosts file that maps `localhost` elsewhere must not redirect the load).
/// IPv4 is preferred, as most local servers bind `127.0.0.1`.
pub fn pick_loopback(host: &str, addrs: &[SocketAddr]) -> Result<SocketAddr> {
    if addrs.is_empty() {
        bail!("{host} resolved to no address");
    }
    if let Some(bad) = addrs.iter().find(|a| !is_loopback_ip(a.ip())) {
        bail!(
            "refusing target {host}: it resolves to non-loopback address {}",
            bad.ip()
        );
    }
    Ok(addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .unwrap_or(addrs[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_literals_and_localhost() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "127.255.255.254",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(check_host(host).unwrap().is_some(), "{host}");
        }
        for host in ["localhost", "LocalHost"] {
            assert_eq!(check_host(host).unwrap(), None, "{host}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for host in [
            "10.0.0.1",
            "0.0.0.0",
            "128.0.0.1",
            "192.168.1.10",
            "[::]",
            "[::2]",
            "[::ffff:10.0.0.1]",
            "[fe80::1]",
            "example.com",
            "localhost.example.com",
            "127.0.0.1.nip.io",
            "localhost.",
            "",
        ] {
            assert!(check_host(host).is_err(), "{host} must be refused");
        }
    }

    #[tokio::test]
    async fn resolve_checks_scheme_and_host() {
        let t = resolve("http://127.0.0.1:8080/token?x=1").await.unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        let t = resolve("http://[::1]/").await.unwrap();
        assert_eq!(t.addr, "[::1]:80".parse().unwrap());
        // Userinfo must not fool the guard: the host is what is connected to.
        let t = resolve("http://example.com@127.0.0.1:9/").await.unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        assert!(resolve("http://127.0.0.1@example.com/").await.is_err());
        assert!(resolve("https://127.0.0.1/").await.is_err());
        assert!(resolve("127.0.0.1:80").await.is_err());
        assert!(resolve("http://192.0.2.1:80/").await.is_err());
    }

    #[test]
    fn names_must_resolve_only_to_loopback() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let outside: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert_eq!(pick_loopback("localhost", &[v6, v4]).unwrap(), v4);
        assert_eq!(pick_loopback("localhost", &[v6]).unwrap(), v6);
        assert!(pick_loopback("localhost", &[v4, outside]).is_err());
        assert!(pick_loopback("localhost", &[]).is_err());
    }
}
