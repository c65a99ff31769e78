//! `X-Forwarded-For` and `Forwarded` (src/locate/forwarded.rs).
//!
//! The input is one header value per line. Properties: never panics; an address read from a
//! node, printed in any of the node forms (bare, with a port, bracketed, quoted), reads back as
//! the same address; a chain printed as one header line reads back as the same chain; a peer
//! that is not a trusted proxy is always the client, whatever the headers say.

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use regiongate::locate::cidr::CidrSet;
use regiongate::locate::forwarded::{
    ChainHeader, ClientAddressPolicy, Hop, forwarded_chain, parse_node, xff_chain,
};
use regiongate::privacy::canonical_ip;
use std::net::IpAddr;

/// Every node form an address can be written in.
fn node_forms(ip: IpAddr) -> Vec<String> {
    match ip {
        IpAddr::V4(_) => vec![
            ip.to_string(),
            format!("{ip}:8080"),
            format!("{ip}:_port"),
            format!("\"{ip}:443\""),
        ],
        IpAddr::V6(_) => vec![
            ip.to_string(),
            format!("[{ip}]"),
            format!("[{ip}]:443"),
            format!("\"[{ip}]:_p\""),
        ],
    }
}

/// A chain printed as one header line (test-only printer; the library has none).
fn print_chain(chain: &[Hop], forwarded: bool) -> String {
    let node = |h: &Hop| match h {
        Hop::Addr(IpAddr::V4(ip)) => ip.to_string(),
        Hop::Addr(IpAddr::V6(ip)) => format!("\"[{ip}]\""),
        Hop::Opaque => "unknown".to_owned(),
    };
    let parts: Vec<String> = chain
        .iter()
        .map(|h| {
            if forwarded {
                format!("for={}", node(h))
            } else {
                node(h).trim_matches('"').to_owned()
            }
        })
        .collect();
    parts.join(", ")
}

fn one_line(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_static(name),
        HeaderValue::from_str(value).expect("printed chains are valid header values"),
    );
    h
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Hop::Addr(ip) = parse_node(s) {
            for form in node_forms(ip) {
                assert_eq!(parse_node(&form), Hop::Addr(ip), "node round trip: {form}");
            }
        }
    }

    let mut headers = HeaderMap::new();
    let mut lines = data.split(|&b| b == b'\n');
    if let Some(first) = lines.next()
        && let Ok(v) = HeaderValue::from_bytes(first)
    {
        headers.append("cf-connecting-ip", v);
    }
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append("x-forwarded-for", v.clone());
            headers.append("forwarded", v);
        }
    }

    let xff = xff_chain(&headers);
    if !xff.is_empty() {
        let again = xff_chain(&one_line("x-forwarded-for", &print_chain(&xff, false)));
        assert_eq!(again, xff, "X-Forwarded-For round trip");
    }
    let fwd = forwarded_chain(&headers);
    if !fwd.is_empty() {
        let again = forwarded_chain(&one_line("forwarded", &print_chain(&fwd, true)));
        assert_eq!(again, fwd, "Forwarded round trip");
    }

    let trusted = CidrSet::parse("10.0.0.0/8, 127.0.0.0/8, ::1").expect("networks");
    for chain in [ChainHeader::XForwardedFor, ChainHeader::Forwarded] {
        let policy = ClientAddressPolicy {
            trusted_proxies: trusted.clone(),
            chain: chain.clone(),
            trusted_header: Some(HeaderName::from_static("cf-connecting-ip")),
        };
        for peer in ["203.0.113.7", "2001:db8::7", "::ffff:198.51.100.1"] {
            let peer: IpAddr = peer.parse().expect("address");
            let got = policy.client(peer, &headers).map(|c| c.addr());
            assert_eq!(
                got,
                Some(canonical_ip(peer)),
                "an untrusted peer is the client"
            );
        }
        // From a trusted peer: the client is the peer, the trusted header's address or an
        // address of the chain, or unknown.
        let peer: IpAddr = "10.1.2.3".parse().expect("address");
        if let Some(c) = policy.client(peer, &headers) {
            let ip = c.addr();
            let from_header = headers
                .get("cf-connecting-ip")
                .and_then(|v| v.to_str().ok())
                .map(parse_node);
            let chain = if chain == ChainHeader::XForwardedFor {
                &xff
            } else {
                &fwd
            };
            assert!(
                ip == canonical_ip(peer)
                    || from_header
                        .is_some_and(|h| matches!(h, Hop::Addr(a) if canonical_ip(a) == ip))
                    || chain
                        .iter()
                        .any(|h| matches!(h, Hop::Addr(a) if canonical_ip(*a) == ip)),
                "the client comes from the peer, the trusted header or the chain"
            );
        }
    }
});
