//! Who the client is: the peer address, or, when the peer is a trusted proxy, the address its
//! forwarding headers name, read from the right so a client cannot choose its own key by
//! sending a made-up leading entry.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;

use crate::error::{Error, ErrorCode, Result};

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`, or one address).
///
/// ```
/// use redisx_runtime::http::Cidr;
///
/// let net: Cidr = "10.0.0.0/8".parse()?;
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("::1".parse::<Cidr>()?.contains("::1".parse().unwrap()));
/// # Ok::<(), redisx_runtime::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::new(
                ErrorCode::ConfigInvalid,
                format!(
                    "`{s}` is not an address range: expected `10.0.0.0/8`, `fd00::/8` or one address"
                ),
            )
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(IpAddr::from_str(addr.trim()).map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One hop of a forwarding header: an address, or a token that is not one (`unknown`, an
/// obfuscated `_hidden`), which can never be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hop {
    Ip(IpAddr),
    Opaque(String),
}

impl Hop {
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Ip(ip) => ip.to_string(),
            Self::Opaque(s) => s.clone(),
        }
    }
}

/// The client of a request from `peer` with `headers`, trusting the proxies in `trusted`:
/// the peer itself unless it is trusted; then the rightmost hop of the forwarding chain
/// (`Forwarded`, else `X-Forwarded-For`, else `X-Real-IP`) that is not a trusted proxy, or the
/// leftmost when every hop is trusted.
pub(crate) fn client(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> Hop {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Hop::Ip(canonical(peer));
    }
    let chain = chain(headers);
    if chain.is_empty() {
        return Hop::Ip(canonical(peer));
    }
    for hop in chain.iter().rev() {
        match hop {
            Hop::Ip(ip) if is_trusted(*ip) => {}
            other => return other.clone(),
        }
    }
    chain[0].clone()
}

/// The forwarding chain, client first: from `Forwarded`, else `X-Forwarded-For`, else
/// `X-Real-IP` (every instance of the header, in order).
fn chain(headers: &HeaderMap) -> Vec<Hop> {
    let values = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| hop(v))
                })
            })
            .collect();
    }
    let xff = values("x-forwarded-for");
    if !xff.is_empty() {
        return xff.iter().flat_map(|v| v.split(',')).map(hop).collect();
    }
    values("x-real-ip").into_iter().map(hop).collect()
}

/// One hop's text: an address (quoted, bracketed IPv6, with or without a port) or a token.
fn hop(raw: &str) -> Hop {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = IpAddr::from_str(s) {
        return Hop::Ip(canonical(ip));
    }
    if let Ok(sa) = SocketAddr::from_str(s) {
        return Hop::Ip(canonical(sa.ip()));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.split(']').next())
        && let Ok(ip) = IpAddr::from_str(inner)
    {
        return Hop::Ip(canonical(ip));
    }
    Hop::Opaque(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            client(ip("203.0.113.5"), &h, &[]),
            Hop::Ip(ip("203.0.113.5"))
        );
    }

    #[test]
    fn a_trusted_proxy_is_read_from_the_right() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        // The client made up the leading entry; the proxy appended the real address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(
            client(ip("10.0.0.1"), &h, &trusted),
            Hop::Ip(ip("198.51.100.7"))
        );
        // Every hop trusted: the leftmost is the client.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.2")]);
        assert_eq!(
            client(ip("10.0.0.1"), &h, &trusted),
            Hop::Ip(ip("10.1.1.1"))
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_over_x_real_ip() {
        let trusted = ["127.0.0.1".parse().unwrap()];
        let h = headers(&[
            ("x-real-ip", "192.0.2.3"),
            ("x-forwarded-for", "192.0.2.2"),
            (
                "forwarded",
                r#"for="[2001:db8::1]:4711";proto=https, for=192.0.2.60"#,
            ),
        ]);
        assert_eq!(
            client(ip("127.0.0.1"), &h, &trusted),
            Hop::Ip(ip("192.0.2.60"))
        );
        let h = headers(&[("x-real-ip", "192.0.2.3"), ("x-forwarded-for", "192.0.2.2")]);
        assert_eq!(
            client(ip("127.0.0.1"), &h, &trusted),
            Hop::Ip(ip("192.0.2.2"))
        );
        let h = headers(&[("x-real-ip", "192.0.2.3")]);
        assert_eq!(
            client(ip("127.0.0.1"), &h, &trusted),
            Hop::Ip(ip("192.0.2.3"))
        );
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(
            client(ip("127.0.0.1"), &h, &trusted),
            Hop::Opaque("unknown".to_owned())
        );
    }

    #[test]
    fn ranges_parse_and_match() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8::9")));
        assert!(!v6.contains(ip("2001:db9::9")));
        let lo: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(lo.contains(ip("::ffff:127.0.0.1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
    }
}
