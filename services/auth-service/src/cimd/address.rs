//! Which `client_id` URLs, and which addresses behind them, a metadata document may be fetched
//! from: the server-side request forgery rules. Only canonical `https://` URLs with a path, and
//! only globally routable unicast addresses (RFC 6890 special-purpose registries, RFC 9728 §7.7).
//! Kept apart from the fetcher so that the whole policy reads, and is tested, in one place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Longer `client_id` URLs are refused outright; they only serve abuse.
const MAX_CLIENT_ID_LEN: usize = 2048;

/// True when `client_id` has the form of a Client ID Metadata Document URL: canonical
/// `https://` URL with a non-root path, no fragment and no user info. Says nothing about whether
/// its host is acceptable; [`super::CimdFetcher::fetch`] checks that.
pub fn is_cimd_client_id(client_id: &str) -> bool {
    check_url(client_id, false).is_ok()
}

/// True for addresses a metadata document must never be fetched from: everything except
/// globally routable unicast (RFC 6890 special-purpose registries, RFC 9728 §7.7). IPv4-mapped
/// and NAT64 (64:ff9b::/96) IPv6 addresses are judged by the IPv4 address they embed; IPv6
/// outside 2000::/3 (global unicast) is refused by default.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

const FORBIDDEN_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network", incl. unspecified
    ([10, 0, 0, 0], 8),      // private (RFC 1918)
    ([100, 64, 0, 0], 10),   // shared address space / CGNAT (RFC 6598)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, incl. cloud metadata 169.254.169.254
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // TEST-NET-1
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated, RFC 7526)
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking (RFC 2544)
    ([198, 51, 100, 0], 24), // TEST-NET-2
    ([203, 0, 113, 0], 24),  // TEST-NET-3
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, incl. limited broadcast
];

/// Special-purpose blocks inside 2000::/3 (the rest of IPv6 is refused wholesale).
const FORBIDDEN_V6_IN_GLOBAL: &[(u128, u32)] = &[
    (0x2001_0000 << 96, 23), // IETF protocol assignments, incl. Teredo, benchmarking, ORCHID
    (0x2001_0db8 << 96, 32), // documentation
    (0x2002 << 112, 16),     // 6to4: tunnels to arbitrary IPv4, including private
    (0x3fff_0000 << 96, 20), // documentation (RFC 9637)
];

fn in_prefix(addr: u128, net: u128, len: u32, bits: u32) -> bool {
    let shift = bits - len;
    (addr >> shift) == (net >> shift)
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let a = u32::from(ip);
    FORBIDDEN_V4
        .iter()
        .any(|(net, len)| in_prefix(a.into(), u32::from_be_bytes(*net).into(), *len, 32))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let a = u128::from(ip);
    const NAT64_WKP: u128 = 0x0064_ff9b << 96;
    if in_prefix(a, NAT64_WKP, 96, 128) {
        return forbidden_v4(Ipv4Addr::from(a as u32));
    }
    if !in_prefix(a, 0x2 << 124, 3, 128) {
        return true;
    }
    FORBIDDEN_V6_IN_GLOBAL
        .iter()
        .any(|(net, len)| in_prefix(a, *net, *len, 128))
}

/// `localhost`, `*.localhost` (RFC 6761), 127.0.0.0/8 and ::1.
pub(super) fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks the form of a `client_id` URL. `allow_loopback_http` (tests only) also admits
/// `http://` on a loopback host.
pub(super) fn check_url(raw: &str, allow_loopback_http: bool) -> Result<Url, &'static str> {
    if raw.len() > MAX_CLIENT_ID_LEN {
        return Err("too long");
    }
    let url = Url::parse(raw).map_err(|_| "not a valid url")?;
    let host = url.host().ok_or("no host")?;
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback_http && is_loopback_host(&host) => {}
        _ => return Err("scheme must be https"),
    }
    if url.fragment().is_some() || raw.contains('#') {
        return Err("must not contain a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user info");
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err("must have a path");
    }
    // The document's client_id must equal the URL exactly; refusing any form the parser would
    // rewrite (dot segments, upper-case host, default port, stray characters) means the string
    // compared is the resource fetched.
    if url.as_str() != raw {
        return Err(
            "must be in normalized form (no dot segments, lower-case host, no default port)",
        );
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cimd::test_support::{cfg, init_tls, ip};
    use crate::cimd::{CimdError, CimdFetcher};
    use crate::config::CimdConfig;

    // ---- address classification ----

    #[test]
    fn ip_classification_table() {
        let forbidden = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
            "64:ff9b::7f00:1",    // NAT64 of 127.0.0.1
            "64:ff9b::c0a8:101",  // NAT64 of 192.168.1.1
            "64:ff9b:1::1",       // local-use NAT64
            "100::1",             // discard-only
            "2001::1",            // Teredo
            "2001:2::1",          // benchmarking
            "2001:db8::1",        // documentation
            "2002:a00:1::1",      // 6to4 of 10.0.0.1
            "2002:5db8:d822::1",  // 6to4 of a public address: 6to4 is refused wholesale
            "3fff::1",            // documentation (RFC 9637)
            "5f00::1",            // SRv6 SIDs
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "4000::1", // unallocated
        ];
        for s in forbidden {
            assert!(is_forbidden_ip(ip(s)), "{s} should be forbidden");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:200::1", // just past 2001::/23
            "::ffff:8.8.8.8",
            "64:ff9b::808:808", // NAT64 of 8.8.8.8
        ];
        for s in allowed {
            assert!(!is_forbidden_ip(ip(s)), "{s} should be allowed");
        }
    }

    // ---- URL form ----

    #[test]
    fn url_form_checks() {
        assert!(is_cimd_client_id(
            "https://app.example.com/oauth/client.json"
        ));
        assert!(is_cimd_client_id("https://app.example.com:8443/c"));
        assert!(is_cimd_client_id("https://app.example.com/c?v=1"));
        let refused = [
            ("http://app.example.com/c", "scheme must be https"),
            (
                "https://app.example.com/c#frag",
                "must not contain a fragment",
            ),
            ("https://app.example.com/c#", "must not contain a fragment"),
            (
                "https://user:pw@app.example.com/c",
                "must not contain user info",
            ),
            (
                "https://user@app.example.com/c",
                "must not contain user info",
            ),
            ("https://app.example.com/", "must have a path"),
            ("https://app.example.com", "must have a path"),
            ("https://app.example.com/?x=1", "must have a path"),
            (
                "https://app.example.com/a/../c",
                "must be in normalized form (no dot segments, lower-case host, no default port)",
            ),
            (
                "https://app.example.com/./c",
                "must be in normalized form (no dot segments, lower-case host, no default port)",
            ),
            (
                "https://APP.example.com/c",
                "must be in normalized form (no dot segments, lower-case host, no default port)",
            ),
            (
                "https://app.example.com:443/c",
                "must be in normalized form (no dot segments, lower-case host, no default port)",
            ),
            ("app.example.com/c", "not a valid url"),
            ("urn:example:client", "no host"),
            ("my-client-123", "not a valid url"),
        ];
        for (u, why) in refused {
            assert_eq!(check_url(u, false).unwrap_err(), why, "{u}");
            assert!(!is_cimd_client_id(u), "{u}");
        }
        let long = format!("https://app.example.com/{}", "a".repeat(MAX_CLIENT_ID_LEN));
        assert_eq!(check_url(&long, false).unwrap_err(), "too long");
    }

    #[test]
    fn accepts_applies_dangerous_mode() {
        let strict = CimdFetcher::new(&cfg(false));
        let loose = CimdFetcher::new(&cfg(true));
        for u in [
            "http://127.0.0.1:8080/c",
            "http://localhost:1/c",
            "http://[::1]:2/c",
            "http://a.localhost/c",
        ] {
            assert!(!strict.accepts(u), "{u}");
            assert!(loose.accepts(u), "{u}");
        }
        assert!(!loose.accepts("http://app.example.com/c"));
        assert!(!loose.accepts("http://10.0.0.1/c"));
        assert!(strict.accepts("https://app.example.com/c"));
        assert!(loose.accepts("https://app.example.com/c"));
    }

    // ---- SSRF refusals before any connection ----

    #[tokio::test]
    async fn forbidden_ip_literals_refused() {
        init_tls();
        let f = CimdFetcher::new(&cfg(false));
        for (u, addr) in [
            ("https://169.254.169.254/x", "169.254.169.254"),
            ("https://127.0.0.1/x", "127.0.0.1"),
            ("https://10.0.0.1/x", "10.0.0.1"),
            ("https://[::1]/x", "::1"),
            ("https://[::ffff:a9fe:a9fe]/x", "::ffff:169.254.169.254"),
            ("https://[fd00::1]/x", "fd00::1"),
        ] {
            assert!(f.accepts(u), "{u} has a valid form");
            match f.fetch(u).await {
                Err(CimdError::ForbiddenAddress(got)) => assert_eq!(got, ip(addr), "{u}"),
                other => panic!("{u}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn dangerous_mode_still_refuses_non_loopback_special_addresses() {
        init_tls();
        let f = CimdFetcher::new(&cfg(true));
        for u in [
            "https://169.254.169.254/x",
            "https://10.0.0.1/x",
            "https://[fe80::1]/x",
        ] {
            assert!(
                matches!(f.fetch(u).await, Err(CimdError::ForbiddenAddress(_))),
                "{u}"
            );
        }
    }

    #[tokio::test]
    async fn localhost_name_refused_by_resolution() {
        init_tls();
        let f = CimdFetcher::new(&cfg(false));
        match f.fetch("https://localhost/client.json").await {
            Err(CimdError::ForbiddenAddress(a)) => assert!(a.is_loopback(), "{a}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn any_forbidden_resolved_address_refuses() {
        init_tls();
        let public: &[IpAddr] = &[ip("93.184.216.34"), ip("10.0.0.1")];
        let f = CimdFetcher::with_test_hosts(
            &cfg(false),
            &[("mixed.example", public), ("empty.example", &[])],
        );
        assert!(matches!(
            f.fetch("https://mixed.example/c").await,
            Err(CimdError::ForbiddenAddress(a)) if a == ip("10.0.0.1")
        ));
        assert!(matches!(
            f.fetch("https://empty.example/c").await,
            Err(CimdError::Resolve)
        ));
    }

    #[tokio::test]
    async fn url_errors_and_disabled() {
        init_tls();
        let f = CimdFetcher::new(&cfg(false));
        assert!(matches!(
            f.fetch("http://app.example.com/c").await,
            Err(CimdError::NotAllowedUrl(_))
        ));
        assert!(matches!(
            f.fetch("https://app.example.com/").await,
            Err(CimdError::NotAllowedUrl(_))
        ));
        let off = CimdFetcher::new(&CimdConfig {
            enabled: false,
            ..cfg(false)
        });
        assert!(!off.enabled());
        assert!(matches!(
            off.fetch("https://app.example.com/c").await,
            Err(CimdError::Disabled)
        ));
    }
}
