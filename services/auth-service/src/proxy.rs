//! The client address behind reverse proxies.
//!
//! A forwarding header is only as trustworthy as whoever wrote each part of it: any client can
//! send `X-Forwarded-For: 1.2.3.4`, and a proxy *appends* the address it received the request from.
//! So the header is read from the right, starting at the TCP peer: as long as the hop we are
//! looking at is one of the configured trusted proxies (`http.trusted_proxies`), the address it
//! reported (the entry to its left) is believed; the first address that is not a trusted proxy is
//! the client. A peer that is not trusted is the client, whatever headers it sent.
//!
//! Exactly one header is read (`http.client_ip_header`): the one the operator's proxies set. If
//! the server also read the other, a client could put a fake address in the header the proxy does
//! not touch.

use std::net::{IpAddr, SocketAddr};

/// One CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128). Host bits must be
    /// zero, so that `10.0.0.1/8` (probably a typo) is refused rather than silently widened.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: prefix length must be 0-{max}")),
            },
        };
        let net = Network { addr, prefix };
        if net.mask(addr) != bits(addr) {
            return Err(format!(
                "{s:?}: host bits are set (did you mean {}?)",
                net.base()
            ));
        }
        Ok(net)
    }

    fn mask(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let b = bits(ip);
        if self.prefix == 0 {
            0
        } else {
            b & (u128::MAX << (width - u32::from(self.prefix)))
        }
    }

    fn base(&self) -> String {
        let m = self.mask(self.addr);
        let ip: IpAddr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4((m as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(m.into()),
        };
        format!("{ip}/{}", self.prefix)
    }

    /// Whether `ip` is inside the block. IPv4-mapped IPv6 addresses count as their IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.addr.is_ipv4() == ip.is_ipv4() && self.mask(ip) == bits(self.addr)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Which header the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardHeader {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(format!(
                "{s:?}: must be \"x-forwarded-for\" or \"forwarded\""
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// The trusted proxy networks and the header they write.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    networks: Vec<Network>,
    header: ForwardHeader,
}

/// One hop of a forwarding header, as far as the client address is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Addr(IpAddr),
    /// `unknown`, an obfuscated identifier (`_hidden`), or something unparseable: the chain of
    /// addresses stops here.
    Opaque,
}

impl Default for TrustedProxies {
    fn default() -> Self {
        Self::none()
    }
}

impl TrustedProxies {
    /// Parses `http.trusted_proxies`; an error names the entry.
    pub fn new(networks: &[String], header: ForwardHeader) -> Result<Self, String> {
        let networks = networks
            .iter()
            .enumerate()
            .map(|(i, s)| Network::parse(s).map_err(|e| format!("[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { networks, header })
    }

    /// Trusts nobody: the peer address is always the client.
    pub fn none() -> Self {
        Self {
            networks: Vec::new(),
            header: ForwardHeader::XForwardedFor,
        }
    }

    pub fn header(&self) -> ForwardHeader {
        self.header
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The client address of a request from `peer` carrying `values` (every line of the
    /// configured header, in order). Walks the header from the right while the current hop is a
    /// trusted proxy; the first untrusted address is the client. When the chain ends in an
    /// opaque hop (`unknown`, an obfuscated name, garbage), the last trusted proxy is the best
    /// address known; when every address is trusted, the left-most one.
    pub fn client_ip<'a>(&self, peer: IpAddr, values: impl Iterator<Item = &'a str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut hops = Vec::new();
        for v in values {
            match self.header {
                ForwardHeader::XForwardedFor => {
                    hops.extend(v.split(',').map(|e| parse_node(e.trim(), false)))
                }
                ForwardHeader::Forwarded => hops.extend(forwarded_for(v)),
            }
        }
        let mut current = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Hop::Opaque => return current,
                Hop::Addr(ip) => {
                    current = ip.to_canonical();
                    if !self.is_trusted(current) {
                        return current;
                    }
                }
            }
        }
        current
    }
}

/// A node of `X-Forwarded-For` or of a `Forwarded` `for=` value: an address with an optional
/// port (`1.2.3.4:80`, `[2001:db8::1]:80`, bare IPv6 in X-Forwarded-For).
fn parse_node(s: &str, quoted_v6_only: bool) -> Hop {
    if let Ok(ip) = s.parse::<IpAddr>() {
        // RFC 7239 §6 wants IPv6 in brackets; a bare one there is malformed.
        if !(quoted_v6_only && ip.is_ipv6()) {
            return Hop::Addr(ip);
        }
        return Hop::Opaque;
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Hop::Addr(sa.ip());
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'))
        && let Ok(ip) = inner.parse::<IpAddr>()
        && ip.is_ipv6()
    {
        return Hop::Addr(ip);
    }
    // RFC 7239 §6.3 `[v6]:_obfport` / `v4:_obfport`: the node is known, the port hidden.
    if let Some((node, port)) = s.rsplit_once(':')
        && port.starts_with('_')
        && !node.is_empty()
        && let Hop::Addr(ip) = parse_node(node, quoted_v6_only)
    {
        return Hop::Addr(ip);
    }
    Hop::Opaque
}

/// The `for=` node of each element of one `Forwarded` header line (RFC 7239 §4); an element
/// without `for` is an opaque hop.
fn forwarded_for(value: &str) -> Vec<Hop> {
    let mut hops = Vec::new();
    for element in split_unquoted(value, ',') {
        let mut node = None;
        for pair in split_unquoted(element, ';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("for") {
                let v = v.trim();
                let v = match v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                    // quoted-string: backslash escapes (RFC 7230 §3.2.6).
                    Some(inner) => inner.replace('\\', ""),
                    None => v.to_owned(),
                };
                node = Some(parse_node(&v, true));
            }
        }
        if !element.trim().is_empty() {
            hops.push(node.unwrap_or(Hop::Opaque));
        }
    }
    hops
}

/// Splits at `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(nets: &[&str], header: ForwardHeader) -> TrustedProxies {
        let nets: Vec<String> = nets.iter().map(|s| (*s).to_owned()).collect();
        TrustedProxies::new(&nets, header).unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let n = Network::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.1.2.3")));
        assert!(n.contains(ip("::ffff:10.1.2.3")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::1")));
        let h = Network::parse("127.0.0.1").unwrap();
        assert!(h.contains(ip("127.0.0.1")) && !h.contains(ip("127.0.0.2")));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Network::parse("::/0").unwrap().contains(ip("2001::1")));
        for (bad, why) in [
            ("10.0.0.1/8", "host bits are set (did you mean 10.0.0.0/8?)"),
            ("10.0.0.0/33", "prefix length must be 0-32"),
            ("2001:db8::/129", "prefix length must be 0-128"),
            ("proxy.internal", "is not an IP address or CIDR block"),
            ("10.0.0.0/x", "prefix length"),
        ] {
            let e = Network::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = TrustedProxies::new(
            &["10.0.0.0/8".into(), "nope".into()],
            ForwardHeader::XForwardedFor,
        )
        .unwrap_err();
        assert!(e.starts_with("[1]: "), "{e}");
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_sends() {
        let p = proxies(&["10.0.0.0/8"], ForwardHeader::XForwardedFor);
        let peer = ip("198.51.100.7");
        assert_eq!(p.client_ip(peer, ["203.0.113.1"].into_iter()), peer);
        assert_eq!(
            TrustedProxies::none().client_ip(ip("127.0.0.1"), ["1.2.3.4"].into_iter()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn right_most_untrusted_address_wins() {
        let p = proxies(
            &["10.0.0.0/8", "192.168.0.0/16"],
            ForwardHeader::XForwardedFor,
        );
        let peer = ip("10.0.0.2");
        // The client prepended a fake address; the proxies appended what they saw.
        let chain = ["6.6.6.6, 198.51.100.9, 192.168.1.1"];
        assert_eq!(p.client_ip(peer, chain.into_iter()), ip("198.51.100.9"));
        // Several header lines are one list, in order.
        let lines = ["6.6.6.6", "198.51.100.9", "192.168.1.1"];
        assert_eq!(p.client_ip(peer, lines.into_iter()), ip("198.51.100.9"));
        // No header: the proxy itself.
        assert_eq!(p.client_ip(peer, std::iter::empty()), peer);
        // All trusted: the left-most.
        assert_eq!(
            p.client_ip(peer, ["10.9.9.9, 192.168.1.1"].into_iter()),
            ip("10.9.9.9")
        );
        // Ports and brackets are tolerated; garbage stops the walk at the last trusted hop.
        assert_eq!(
            p.client_ip(peer, ["198.51.100.9:5123"].into_iter()),
            ip("198.51.100.9")
        );
        assert_eq!(
            p.client_ip(peer, ["[2001:db8::7]:443"].into_iter()),
            ip("2001:db8::7")
        );
        assert_eq!(
            p.client_ip(peer, ["6.6.6.6, not-an-ip, 192.168.1.1"].into_iter()),
            ip("192.168.1.1")
        );
        assert_eq!(
            p.client_ip(peer, ["::ffff:198.51.100.9"].into_iter()),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn forwarded_header() {
        let p = proxies(&["10.0.0.0/8"], ForwardHeader::Forwarded);
        let peer = ip("10.0.0.2");
        let at = |v: &str| p.client_ip(peer, [v].into_iter());
        assert_eq!(
            at("for=192.0.2.60;proto=http;by=203.0.113.43"),
            ip("192.0.2.60")
        );
        assert_eq!(
            at("For=\"[2001:db8:cafe::17]:4711\""),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(at("for=\"192.0.2.60:8080\""), ip("192.0.2.60"));
        assert_eq!(at("for=\"[2001:db8::1]:_port\""), ip("2001:db8::1"));
        assert_eq!(
            at("for=6.6.6.6, for=198.51.100.1;proto=https, for=10.1.1.1"),
            ip("198.51.100.1")
        );
        // A comma or semicolon inside a quoted value does not split.
        assert_eq!(at("for=\"198.51.100.1\";x=\"a,b;c\""), ip("198.51.100.1"));
        // unknown / obfuscated / missing `for` / bare IPv6: the chain stops at the last trusted hop.
        assert_eq!(at("for=6.6.6.6, for=unknown"), peer);
        assert_eq!(at("for=6.6.6.6, for=_hidden, for=10.1.1.1"), ip("10.1.1.1"));
        assert_eq!(at("for=6.6.6.6, proto=https"), peer);
        assert_eq!(at("for=2001:db8::1"), peer);
        // X-Forwarded-For is not read when Forwarded is configured (and vice versa).
        let xff = proxies(&["10.0.0.0/8"], ForwardHeader::XForwardedFor);
        assert_eq!(xff.client_ip(peer, ["for=198.51.100.1"].into_iter()), peer);
    }
}
