//! Address ranges in CIDR notation, for `gateway.listeners[].allow`.
//!
//! Rules:
//! 1. `A.B.C.D/N` (N up to 32) and `IPV6/N` (N up to 128); an address alone is a single host.
//! 2. Host bits must be zero (`10.0.0.1/8` is refused as a likely typo for `10.0.0.0/8`).
//! 3. An IPv4 client that reaches an IPv6 listener as `::ffff:A.B.C.D` matches IPv4 ranges.

use std::net::IpAddr;

/// One range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not an address, or not `ADDRESS/PREFIX`.
    #[error("expected an address range such as 10.0.0.0/8 or fd00::/8")]
    Malformed,
    /// A prefix longer than the address.
    #[error("the prefix length must be at most 32 for IPv4 and 128 for IPv6")]
    Prefix,
    /// Bits set after the prefix.
    #[error("host bits are set after the prefix; did you mean {0}?")]
    HostBits(String),
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let all: u128 = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        all & !((1u128 << (width - prefix)) - 1)
    }
}

impl Cidr {
    /// Parses a range (rule 1 and 2).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| CidrError::Malformed)?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| CidrError::Malformed)?,
            None => width,
        };
        if prefix > width {
            return Err(CidrError::Prefix);
        }
        let m = mask(width, prefix);
        if bits(network) & !m != 0 {
            let fixed = bits(network) & m;
            let shown = match network {
                IpAddr::V4(_) => {
                    std::net::Ipv4Addr::from(u32::try_from(fixed).unwrap_or(0)).to_string()
                }
                IpAddr::V6(_) => std::net::Ipv6Addr::from(fixed).to_string(),
            };
            return Err(CidrError::HostBits(format!("{shown}/{prefix}")));
        }
        Ok(Cidr { network, prefix })
    }

    /// True when `ip` is in the range (rule 3 for mapped addresses).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let m = mask(width, self.prefix);
        bits(ip) & m == bits(self.network)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_what_they_cover() {
        let ten = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains(ip("10.255.0.1")));
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(ten.contains(ip("::ffff:10.1.2.3")), "mapped IPv4");
        assert!(!ten.contains(ip("fd00::1")));
        let host = Cidr::parse("192.0.2.7").unwrap();
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let any4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(any4.contains(ip("203.0.113.9")) && !any4.contains(ip("::1")));
        let ula = Cidr::parse("fd00::/8").unwrap();
        assert!(ula.contains(ip("fd12::1")) && !ula.contains(ip("fe80::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert_eq!(ten.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn mistakes_are_refused() {
        assert_eq!(
            Cidr::parse("10.0.0.1/8"),
            Err(CidrError::HostBits("10.0.0.0/8".into()))
        );
        assert_eq!(Cidr::parse("10.0.0.0/33"), Err(CidrError::Prefix));
        assert_eq!(Cidr::parse("ten/8"), Err(CidrError::Malformed));
        assert_eq!(Cidr::parse("10.0.0.0/x"), Err(CidrError::Malformed));
        assert_eq!(
            Cidr::parse("fd00::1/8"),
            Err(CidrError::HostBits("fd00::/8".into()))
        );
    }
}
