//! Sets of IP networks (trusted proxies, operator VPN/hosting ranges), looked up by binary
//! search over merged ranges. IPv4 networks live in the IPv4-mapped IPv6 space, so one sorted
//! list serves both families.

use ipnet::IpNet;
use std::net::IpAddr;

/// A set of IP networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CidrSet {
    /// Disjoint, sorted, merged inclusive ranges.
    ranges: Vec<(u128, u128)>,
}

fn key(ip: IpAddr) -> u128 {
    match crate::privacy::canonical_ip(ip) {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn range(net: &IpNet) -> (u128, u128) {
    (key(net.network()), key(net.broadcast()))
}

impl CidrSet {
    /// Builds the set from networks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> CidrSet {
        let mut r: Vec<(u128, u128)> = nets.into_iter().map(|n| range(&n.trunc())).collect();
        r.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(r.len());
        for (s, e) in r {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        CidrSet { ranges: merged }
    }

    /// Parses a list of networks (`10.0.0.0/8`, `2001:db8::/32`, or a bare address), one per
    /// line or comma-separated; `#` starts a comment.
    ///
    /// # Errors
    /// The 1-based line number and the text that is not a network.
    pub fn parse(text: &str) -> Result<CidrSet, (usize, String)> {
        let mut nets = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            for item in line.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let net = item
                    .parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| (i + 1, item.to_owned()))?;
                nets.push(net);
            }
        }
        Ok(CidrSet::new(nets))
    }

    /// Whether the address is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let k = key(ip);
        let i = self.ranges.partition_point(|r| r.1 < k);
        self.ranges.get(i).is_some_and(|r| r.0 <= k)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn both_families_and_mapped() {
        let s =
            CidrSet::parse("10.0.0.0/8, 192.0.2.7 # a comment\n2001:db8::/32\n").expect("valid");
        assert!(s.contains(ip("10.1.2.3")));
        assert!(s.contains(ip("::ffff:10.1.2.3")));
        assert!(s.contains(ip("192.0.2.7")));
        assert!(!s.contains(ip("192.0.2.8")));
        assert!(s.contains(ip("2001:db8:ffff::1")));
        assert!(!s.contains(ip("2001:db9::1")));
        assert!(!s.contains(ip("11.0.0.0")));
        assert_eq!(
            CidrSet::parse("10.0.0.0/8\nnope"),
            Err((2, "nope".to_owned()))
        );
    }
}
