//! Who is the client: the socket peer, unless the peer is a trusted proxy.
//!
//! Behind trusted proxies the client is found in `X-Forwarded-For` or RFC 7239 `Forwarded`
//! by walking the list from the right and skipping trusted hops: the rightmost address that is
//! not a trusted proxy is the client (everything to its left was written by parties we cannot
//! trust). An optional trusted header (`CF-Connecting-IP`, `True-Client-IP`) is read only from
//! trusted peers. A peer that is not a trusted proxy can never move its apparent location with
//! any of these headers: they are not even read.

use super::cidr::CidrSet;
use crate::headers::HeaderLines;
use crate::privacy::ClientIp;
use http::HeaderName;
use std::net::IpAddr;
use std::ops::ControlFlow;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = http::header::FORWARDED;

/// Which header carries the client chain behind trusted proxies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainHeader {
    /// `X-Forwarded-For` (all lines, comma-separated, in order).
    XForwardedFor,
    /// RFC 7239 `Forwarded`, its `for=` parameters.
    Forwarded,
}

/// How to find the client address.
#[derive(Clone, Debug)]
pub struct ClientAddressPolicy {
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: CidrSet,
    /// The header with the hop chain.
    pub chain: ChainHeader,
    /// A header that names the client directly (lower-case), believed from trusted peers only;
    /// it wins over the chain when present and valid.
    pub trusted_header: Option<http::HeaderName>,
}

impl Default for ClientAddressPolicy {
    fn default() -> Self {
        ClientAddressPolicy {
            trusted_proxies: CidrSet::default(),
            chain: ChainHeader::XForwardedFor,
            trusted_header: None,
        }
    }
}

/// One element of a forwarding chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// An address (ports and brackets removed).
    Addr(IpAddr),
    /// `unknown`, an obfuscated identifier (`_hidden`), or garbage: nobody behind it is known.
    Opaque,
}

/// Parses one node of X-Forwarded-For or a `for=` value of Forwarded: `1.2.3.4`,
/// `1.2.3.4:80`, `[2001:db8::1]:443`, `2001:db8::1`, optionally quoted.
pub fn parse_node(s: &str) -> Hop {
    let s = s.trim().trim_matches('"').trim();
    if let Some(rest) = s.strip_prefix('[') {
        // [v6] or [v6]:port
        return match rest.split_once(']') {
            Some((addr, tail)) if tail.is_empty() || valid_port(tail.strip_prefix(':')) => {
                addr.parse::<IpAddr>().map_or(Hop::Opaque, Hop::Addr)
            }
            _ => Hop::Opaque,
        };
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Hop::Addr(ip);
    }
    // v4:port (a bare v6 address would have parsed above).
    match s.rsplit_once(':') {
        Some((addr, port)) if valid_port(Some(port)) => addr
            .parse::<std::net::Ipv4Addr>()
            .map_or(Hop::Opaque, |a| Hop::Addr(IpAddr::V4(a))),
        _ => Hop::Opaque,
    }
}

fn valid_port(p: Option<&str>) -> bool {
    // RFC 7239 allows obfuscated ports (`_abc`) too.
    p.is_some_and(|p| {
        !p.is_empty() && (p.parse::<u16>().is_ok() || (p.starts_with('_') && p.len() > 1))
    })
}

/// The hops of all X-Forwarded-For lines, left to right.
pub fn xff_chain<H: HeaderLines + ?Sized>(headers: &H) -> Vec<Hop> {
    headers
        .values_named(&X_FORWARDED_FOR)
        .flat_map(|v| {
            std::str::from_utf8(v).map_or(vec![Hop::Opaque], |s| {
                s.split(',').map(parse_node).collect()
            })
        })
        .collect()
}

/// The `for=` hops of all Forwarded lines, left to right. An element without `for=` is opaque.
pub fn forwarded_chain<H: HeaderLines + ?Sized>(headers: &H) -> Vec<Hop> {
    let mut out = Vec::new();
    for v in headers.values_named(&FORWARDED) {
        let Ok(s) = std::str::from_utf8(v) else {
            out.push(Hop::Opaque);
            continue;
        };
        for element in split_outside_quotes(s, ',') {
            let hop = split_outside_quotes(element, ';')
                .into_iter()
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .map_or(Hop::Opaque, |(_, v)| parse_node(v));
            out.push(hop);
        }
    }
    out
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

impl ClientAddressPolicy {
    /// The client address of a request from `peer`. `None` when the chain hides the client
    /// (an opaque hop before any untrusted address): then there is no IP evidence.
    pub fn client<H: HeaderLines + ?Sized>(&self, peer: IpAddr, headers: &H) -> Option<ClientIp> {
        if !self.trusted_proxies.contains(peer) {
            return Some(ClientIp::new(peer));
        }
        if let Some(name) = &self.trusted_header
            && let Some(s) = headers.first_str(name)
            && let Hop::Addr(ip) = parse_node(s)
        {
            return Some(ClientIp::new(ip));
        }
        // Walk the chain from the right: the rightmost hop that is not a trusted proxy is the
        // client; an opaque hop before it hides the client.
        let mut leftmost = peer;
        let mut step = |hop: Hop| match hop {
            Hop::Addr(ip) if self.trusted_proxies.contains(ip) => {
                leftmost = ip;
                ControlFlow::Continue(())
            }
            Hop::Addr(ip) => ControlFlow::Break(Some(ClientIp::new(ip))),
            Hop::Opaque => ControlFlow::Break(None),
        };
        let found = match self.chain {
            // The same hops as `xff_chain`, right to left, without collecting them.
            ChainHeader::XForwardedFor => headers
                .values_named(&X_FORWARDED_FOR)
                .rev()
                .try_for_each(|v| match std::str::from_utf8(v) {
                    Ok(s) => s.rsplit(',').map(parse_node).try_for_each(&mut step),
                    Err(_) => step(Hop::Opaque),
                }),
            ChainHeader::Forwarded => forwarded_chain(headers)
                .into_iter()
                .rev()
                .try_for_each(step),
        };
        match found {
            ControlFlow::Break(client) => client,
            // Every hop is a trusted proxy (or there is no header): the first one is the client.
            ControlFlow::Continue(()) => Some(ClientIp::new(leftmost)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn policy(chain: ChainHeader) -> ClientAddressPolicy {
        ClientAddressPolicy {
            trusted_proxies: CidrSet::parse("127.0.0.0/8, 10.0.0.0/8, ::1").expect("cidr"),
            chain,
            trusted_header: Some(http::HeaderName::from_static("cf-connecting-ip")),
        }
    }

    fn client(p: &ClientAddressPolicy, peer: &str, h: &[(&str, &str)]) -> Option<IpAddr> {
        p.client(ip(peer), &headers(h)).map(|c| c.addr())
    }

    #[test]
    fn nodes() {
        assert_eq!(parse_node(" 192.0.2.1 "), Hop::Addr(ip("192.0.2.1")));
        assert_eq!(parse_node("192.0.2.1:8080"), Hop::Addr(ip("192.0.2.1")));
        assert_eq!(
            parse_node("\"[2001:db8::1]:443\""),
            Hop::Addr(ip("2001:db8::1"))
        );
        assert_eq!(parse_node("[2001:db8::1]"), Hop::Addr(ip("2001:db8::1")));
        assert_eq!(parse_node("2001:db8::1"), Hop::Addr(ip("2001:db8::1")));
        assert_eq!(parse_node("192.0.2.1:_port"), Hop::Addr(ip("192.0.2.1")));
        for bad in [
            "unknown",
            "_hidden",
            "",
            "999.1.1.1",
            "[2001:db8::1",
            "[::1]:x",
            "1.2.3.4:99999",
            "a b",
        ] {
            assert_eq!(parse_node(bad), Hop::Opaque, "{bad:?}");
        }
    }

    #[test]
    fn rightmost_untrusted_from_xff() {
        let p = policy(ChainHeader::XForwardedFor);
        // Client 203.0.113.9 behind two trusted proxies; the left part is the client's claim.
        let h = [
            ("x-forwarded-for", "1.1.1.1, 203.0.113.9"),
            ("x-forwarded-for", "10.0.0.2"),
        ];
        assert_eq!(client(&p, "127.0.0.1", &h), Some(ip("203.0.113.9")));
        // All trusted: the leftmost.
        assert_eq!(
            client(
                &p,
                "127.0.0.1",
                &[("x-forwarded-for", "10.0.0.5, 10.0.0.2")]
            ),
            Some(ip("10.0.0.5"))
        );
        // No header from a trusted peer: the peer.
        assert_eq!(client(&p, "127.0.0.1", &[]), Some(ip("127.0.0.1")));
        // An opaque hop hides the client.
        assert_eq!(
            client(
                &p,
                "127.0.0.1",
                &[("x-forwarded-for", "203.0.113.9, unknown")]
            ),
            None
        );
        assert_eq!(
            client(&p, "127.0.0.1", &[("x-forwarded-for", "garbage!!")]),
            None
        );
        assert_eq!(
            client(
                &p,
                "127.0.0.1",
                &[("x-forwarded-for", "[2001:db8::5]:1234")]
            ),
            Some(ip("2001:db8::5"))
        );
    }

    #[test]
    fn the_walk_agrees_with_the_chain() {
        // `client` walks the header lines from the right without collecting them; it must pick
        // what the rightmost-untrusted rule picks on `xff_chain`.
        let p = policy(ChainHeader::XForwardedFor);
        let cases: &[&[&str]] = &[
            &["203.0.113.9"],
            &["1.1.1.1, 203.0.113.9", "10.0.0.2"],
            &["10.0.0.1", "203.0.113.9, 10.0.0.2"],
            &["203.0.113.9,10.0.0.1", "10.0.0.2, 10.0.0.3"],
            &["198.51.100.4", "unknown, 10.0.0.2"],
            &["unknown", "198.51.100.4, 10.0.0.2"],
            &["10.0.0.9", "10.0.0.8"],
            &[" , 10.0.0.2"],
            &[],
        ];
        for lines in cases {
            let h: Vec<(&str, &str)> = lines.iter().map(|l| ("x-forwarded-for", *l)).collect();
            let hm = headers(&h);
            let mut expected = Some(ip("127.0.0.1"));
            for hop in xff_chain(&hm).iter().rev() {
                match *hop {
                    Hop::Addr(a) if p.trusted_proxies.contains(a) => expected = Some(a),
                    Hop::Addr(a) => {
                        expected = Some(a);
                        break;
                    }
                    Hop::Opaque => {
                        expected = None;
                        break;
                    }
                }
            }
            assert_eq!(client(&p, "127.0.0.1", &h), expected, "{lines:?}");
        }
        // A line that is not UTF-8 is one opaque hop.
        let mut hm = HeaderMap::new();
        hm.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"203.0.113.9, \xff").expect("value"),
        );
        assert_eq!(p.client(ip("127.0.0.1"), &hm).map(|c| c.addr()), None);
        hm.append("x-forwarded-for", "10.0.0.2".parse().expect("value"));
        assert_eq!(p.client(ip("127.0.0.1"), &hm).map(|c| c.addr()), None);
    }

    #[test]
    fn forwarded_header() {
        let p = policy(ChainHeader::Forwarded);
        let h = [
            (
                "forwarded",
                "for=198.51.100.1;proto=https, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
            ),
            ("forwarded", "for=10.0.0.3"),
        ];
        assert_eq!(client(&p, "::1", &h), Some(ip("2001:db8:cafe::17")));
        assert_eq!(
            client(&p, "::1", &[("forwarded", "for=_hidden, for=10.0.0.3")]),
            None
        );
        assert_eq!(
            client(&p, "::1", &[("forwarded", "proto=http")]),
            None,
            "an element without for= hides the client"
        );
        assert_eq!(
            client(
                &p,
                "::1",
                &[("forwarded", "for=\"198.51.100.1;x\", for=10.0.0.2")]
            ),
            None,
            "quoted junk is opaque"
        );
    }

    #[test]
    fn trusted_header_only_from_trusted_peers() {
        let p = policy(ChainHeader::XForwardedFor);
        assert_eq!(
            client(
                &p,
                "10.1.1.1",
                &[
                    ("cf-connecting-ip", "203.0.113.50"),
                    ("x-forwarded-for", "198.51.100.1")
                ]
            ),
            Some(ip("203.0.113.50"))
        );
        assert_eq!(
            client(
                &p,
                "10.1.1.1",
                &[
                    ("cf-connecting-ip", "nonsense"),
                    ("x-forwarded-for", "198.51.100.1")
                ]
            ),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        for chain in [ChainHeader::XForwardedFor, ChainHeader::Forwarded] {
            let p = policy(chain);
            let forged = [
                ("x-forwarded-for", "8.8.8.8"),
                ("x-forwarded-for", "10.0.0.1"),
                ("forwarded", "for=8.8.8.8"),
                ("cf-connecting-ip", "8.8.8.8"),
                ("true-client-ip", "8.8.8.8"),
                ("x-real-ip", "8.8.8.8"),
            ];
            assert_eq!(
                client(&p, "198.51.100.77", &forged),
                Some(ip("198.51.100.77"))
            );
            assert_eq!(
                client(&p, "2001:db8::77", &forged),
                Some(ip("2001:db8::77"))
            );
        }
        // A mapped form of a trusted address is trusted; a lookalike untrusted one is not.
        let p = policy(ChainHeader::XForwardedFor);
        assert_eq!(
            client(
                &p,
                "::ffff:127.0.0.1",
                &[("x-forwarded-for", "203.0.113.1")]
            ),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(
            client(
                &p,
                "::ffff:128.0.0.1",
                &[("x-forwarded-for", "203.0.113.1")]
            ),
            Some(ip("128.0.0.1"))
        );
    }
}
