//! Who the client is: the TCP peer, or — only when the peer is a trusted proxy — the
//! address that the proxies recorded in `X-Forwarded-For`.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// How many leading bits must match: 32 or 128 for a single address.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn is_network_address(&self) -> bool {
        match self.network {
            IpAddr::V4(network) => u32::from(network) & !mask_v4(self.prefix) == 0,
            IpAddr::V6(network) => u128::from(network) & !mask_v6(self.prefix) == 0,
        }
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                u32::from(network) & mask_v4(self.prefix) == u32::from(address) & mask_v4(self.prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                u128::from(network) & mask_v6(self.prefix) == u128::from(address) & mask_v6(self.prefix)
            }
            _ => false,
        }
    }
}

/// The leading `prefix` bits set.
fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpBlock {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = address
            .parse::<IpAddr>()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?
            .to_canonical();
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|bits| *bits <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {width}"))?,
        };
        let block = Self { network, prefix };
        // As PostgreSQL's `cidr` does: `10.0.0.1/8` is almost always a typo.
        if !block.is_network_address() {
            return Err(format!(
                "{text:?} has bits set right of the /{prefix} mask; the block starts at its network address"
            ));
        }
        Ok(block)
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `TRUSTED_PROXIES`: the proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpBlock>);

impl TrustedProxies {
    /// Trust no proxy: the client is always the TCP peer.
    pub fn none() -> Self {
        Self::default()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(address))
    }

    /// The client behind a request from `peer`. An untrusted peer is the client,
    /// whatever it wrote into `X-Forwarded-For` (anyone can send that header). From a
    /// trusted peer, the hops are walked from the nearest: the first one that is not a
    /// trusted proxy is the client. Walking from the right, not taking the leftmost
    /// hop, matters: a client can prepend made-up hops, but not remove the one its
    /// proxy appended.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_for.iter().flat_map(|value| value.split(',')).map(str::trim).filter(|h| !h.is_empty());
        let mut client = peer;
        for hop in hops.collect::<Vec<_>>().into_iter().rev() {
            // A hop that is not an address cannot be attributed: stop at the last
            // proxy that wrote a readable one.
            let Some(address) = parse_hop(hop) else { break };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// A forwarded hop: an address, possibly with a port (`192.0.2.7:4711`, `[2001:db8::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of addresses and CIDR blocks; empty trusts no one.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test value")
    }

    #[test]
    fn blocks_match_their_addresses_only() {
        let block: IpBlock = "10.0.0.0/8".parse().expect("test value");
        assert!(block.contains(ip("10.255.0.1")));
        assert!(!block.contains(ip("11.0.0.1")));
        assert!(block.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6 is the IPv4 address");
        let single: IpBlock = "192.0.2.7".parse().expect("test value");
        assert_eq!(single.prefix(), 32);
        assert!(single.contains(ip("192.0.2.7")) && !single.contains(ip("192.0.2.8")));
        let v6: IpBlock = "2001:db8::/32".parse().expect("test value");
        assert!(v6.contains(ip("2001:db8:1::9")) && !v6.contains(ip("2001:db9::1")));
        let everything: IpBlock = "0.0.0.0/0".parse().expect("test value");
        assert!(everything.contains(ip("203.0.113.1")));
    }

    #[test]
    fn malformed_blocks_are_refused_with_the_reason() {
        assert!("10.0.0.0/33".parse::<IpBlock>().expect_err("test value").contains("0 to 32"));
        assert!("10.0.0.1/8".parse::<IpBlock>().expect_err("test value").contains("bits set right of the /8 mask"));
        assert!("2001:db8::1/32".parse::<IpBlock>().is_err());
        assert!("proxy.internal".parse::<IpBlock>().expect_err("test value").contains("not an IP address"));
        assert!("10.0.0.1, nonsense".parse::<TrustedProxies>().is_err());
        assert_eq!("".parse::<TrustedProxies>().expect("test value"), TrustedProxies::none());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().expect("test value");
        assert_eq!(trusted.client(ip("203.0.113.9"), &["198.51.100.1"]), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::none().client(ip("10.0.0.2"), &["198.51.100.1"]), ip("10.0.0.2"));
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.0.2.1".parse().expect("test value");
        // Client → 192.0.2.1 → 10.0.0.2 → us.
        assert_eq!(trusted.client(ip("10.0.0.2"), &["198.51.100.1, 192.0.2.1"]), ip("198.51.100.1"));
        // The client made up a first hop; its proxy appended the real address.
        assert_eq!(trusted.client(ip("10.0.0.2"), &["1.1.1.1", "198.51.100.1"]), ip("198.51.100.1"));
        // Ports and IPv6 brackets are tolerated.
        assert_eq!(trusted.client(ip("10.0.0.2"), &["198.51.100.1:4711"]), ip("198.51.100.1"));
        assert_eq!(trusted.client(ip("10.0.0.2"), &["[2001:db8::1]:80"]), ip("2001:db8::1"));
        // No header: the proxy itself is the client.
        assert_eq!(trusted.client(ip("10.0.0.2"), &[]), ip("10.0.0.2"));
        // Every hop trusted: the farthest one.
        assert_eq!(trusted.client(ip("10.0.0.2"), &["10.0.0.7"]), ip("10.0.0.7"));
        // Garbage where the proxy should have written an address: the last readable hop.
        assert_eq!(trusted.client(ip("10.0.0.2"), &["198.51.100.1, garbage"]), ip("10.0.0.2"));
    }
}
