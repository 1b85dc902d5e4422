//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer such as
//! an AWS NLB or HAProxy's `send-proxy-v2` puts before a connection's first byte, naming
//! the client it came from; and the header snigate writes to an upstream that wants one.
//!
//! [`parse`] is incremental, like the ClientHello parser: it answers `Incomplete` for every
//! strict prefix of a valid header, and it never reads past the header's end.
//!
//! - v1: `PROXY TCP4|TCP6|UNKNOWN SRC DST SRCPORT DSTPORT\r\n`, at most 107 bytes.
//! - v2: a 12-byte signature, version/command, family/protocol, a 2-byte length, then the
//!   addresses and optional TLVs (ignored). `LOCAL` (a load balancer's health check)
//!   carries no client: the connection's own peer stands.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];
const V1_MAX: usize = 107;
/// Largest v2 header accepted (addresses plus TLVs).
pub const V2_MAX: usize = 16 + 512;

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header took.
    pub len: usize,
    /// The original client and the address it connected to; `None` for v1 `UNKNOWN`,
    /// v2 `LOCAL`, or a family other than TCP over IPv4/IPv6.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// The parser's answer for the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// The whole header is present.
    Complete(Header),
    /// Valid so far; more bytes are needed.
    Incomplete,
    /// Not a PROXY protocol header.
    Invalid,
}

/// Parses a PROXY protocol header at the start of `input`.
pub fn parse(input: &[u8]) -> Parse {
    match input.first() {
        None => Parse::Incomplete,
        Some(b'P') => parse_v1(input),
        Some(0x0d) => parse_v2(input),
        Some(_) => Parse::Invalid,
    }
}

fn parse_v1(input: &[u8]) -> Parse {
    const PREFIX: &[u8] = b"PROXY ";
    let n = input.len().min(PREFIX.len());
    if input[..n] != PREFIX[..n] {
        return Parse::Invalid;
    }
    let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
        return if input.len() >= V1_MAX || input.contains(&b'\n') {
            Parse::Invalid
        } else {
            Parse::Incomplete
        };
    };
    // A bare LF before the CRLF is refused here as it is in a prefix (above), so that no
    // prefix of a header the parser accepts is ever refused.
    if end + 2 > V1_MAX || input[..end].contains(&b'\n') {
        return Parse::Invalid;
    }
    let Ok(line) = std::str::from_utf8(&input[PREFIX.len()..end]) else {
        return Parse::Invalid;
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let addresses = match fields.as_slice() {
        ["UNKNOWN", ..] => None,
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let (Ok(src), Ok(dst), Ok(sport), Ok(dport)) = (
                src.parse::<IpAddr>(),
                dst.parse::<IpAddr>(),
                sport.parse::<u16>(),
                dport.parse::<u16>(),
            ) else {
                return Parse::Invalid;
            };
            if (*proto == "TCP4") != (src.is_ipv4() && dst.is_ipv4()) {
                return Parse::Invalid;
            }
            Some((SocketAddr::new(src, sport), SocketAddr::new(dst, dport)))
        }
        _ => return Parse::Invalid,
    };
    Parse::Complete(Header {
        len: end + 2,
        addresses,
    })
}

fn parse_v2(input: &[u8]) -> Parse {
    let n = input.len().min(V2_SIGNATURE.len());
    if input[..n] != V2_SIGNATURE[..n] {
        return Parse::Invalid;
    }
    let Some(&ver_cmd) = input.get(12) else {
        return Parse::Incomplete;
    };
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 {
        return Parse::Invalid;
    }
    let (Some(&fam), Some(&hi), Some(&lo)) = (input.get(13), input.get(14), input.get(15)) else {
        return Parse::Incomplete;
    };
    let len = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX {
        return Parse::Invalid;
    }
    if input.len() < len {
        return Parse::Incomplete;
    }
    let body = &input[16..len];
    let local = ver_cmd & 0x0f == 0;
    let addresses = match fam {
        _ if local => None,
        // TCP over IPv4.
        0x11 if body.len() >= 12 => {
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
            Some((
                SocketAddr::new(ip(&body[0..4]), port(&body[8..10])),
                SocketAddr::new(ip(&body[4..8]), port(&body[10..12])),
            ))
        }
        // TCP over IPv6.
        0x21 if body.len() >= 36 => {
            let ip = |b: &[u8]| {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
            Some((
                SocketAddr::new(ip(&body[0..16]), port(&body[32..34])),
                SocketAddr::new(ip(&body[16..32]), port(&body[34..36])),
            ))
        }
        0x11 | 0x21 => return Parse::Invalid,
        // UNSPEC, UDP, UNIX: no TCP client to name.
        _ => None,
    };
    Parse::Complete(Header { len, addresses })
}

/// Which header an upstream wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// The header announcing a connection from `client` to `local` (the address it reached).
/// Mixed families are announced as v1 `UNKNOWN` / v2 `LOCAL`-free `UNSPEC`.
pub fn header(version: Version, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (client, local) = match (client, local) {
        (SocketAddr::V4(c), SocketAddr::V6(l)) => match l.ip().to_ipv4_mapped() {
            Some(ip) => (SocketAddr::V4(c), SocketAddr::new(IpAddr::V4(ip), l.port())),
            None => (SocketAddr::V4(c), SocketAddr::V6(l)),
        },
        (SocketAddr::V6(c), SocketAddr::V4(l)) => match c.ip().to_ipv4_mapped() {
            Some(ip) => (SocketAddr::new(IpAddr::V4(ip), c.port()), SocketAddr::V4(l)),
            None => (SocketAddr::V6(c), SocketAddr::V4(l)),
        },
        pair => pair,
    };
    match version {
        Version::V1 => match (client, local) {
            (SocketAddr::V4(c), SocketAddr::V4(l)) => format!(
                "PROXY TCP4 {} {} {} {}\r\n",
                c.ip(),
                l.ip(),
                c.port(),
                l.port()
            )
            .into_bytes(),
            (SocketAddr::V6(c), SocketAddr::V6(l)) => format!(
                "PROXY TCP6 {} {} {} {}\r\n",
                c.ip(),
                l.ip(),
                c.port(),
                l.port()
            )
            .into_bytes(),
            _ => b"PROXY UNKNOWN\r\n".to_vec(),
        },
        Version::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.push(0x21); // version 2, PROXY
            match (client, local) {
                (SocketAddr::V4(c), SocketAddr::V4(l)) => {
                    out.extend_from_slice(&[0x11, 0, 12]);
                    out.extend_from_slice(&c.ip().octets());
                    out.extend_from_slice(&l.ip().octets());
                    out.extend_from_slice(&c.port().to_be_bytes());
                    out.extend_from_slice(&l.port().to_be_bytes());
                }
                (SocketAddr::V6(c), SocketAddr::V6(l)) => {
                    out.extend_from_slice(&[0x21, 0, 36]);
                    out.extend_from_slice(&c.ip().octets());
                    out.extend_from_slice(&l.ip().octets());
                    out.extend_from_slice(&c.port().to_be_bytes());
                    out.extend_from_slice(&l.port().to_be_bytes());
                }
                _ => out.extend_from_slice(&[0x00, 0, 0]),
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(input: &[u8]) -> Header {
        match parse(input) {
            Parse::Complete(h) => h,
            other => panic!("{other:?} for {input:?}"),
        }
    }

    #[test]
    fn v1_and_v2_round_trip_and_every_prefix_is_incomplete() {
        let (c4, l4) = (addr("10.1.2.3:50412"), addr("192.0.2.7:9092"));
        let (c6, l6) = (addr("[2001:db8::1]:4000"), addr("[2001:db8::2]:443"));
        for v in [Version::V1, Version::V2] {
            for (c, l) in [(c4, l4), (c6, l6)] {
                let mut bytes = header(v, c, l);
                let n = bytes.len();
                for i in 0..n {
                    assert_eq!(parse(&bytes[..i]), Parse::Incomplete, "{v:?} prefix {i}");
                }
                bytes.extend_from_slice(b"\x16\x03\x01 the ClientHello");
                let h = complete(&bytes);
                assert_eq!((h.len, h.addresses), (n, Some((c, l))), "{v:?}");
            }
        }
    }

    #[test]
    fn unknown_and_local_name_no_client() {
        assert_eq!(complete(b"PROXY UNKNOWN\r\n").addresses, None);
        assert_eq!(
            complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").addresses,
            None
        );
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            complete(&local),
            Header {
                len: 16,
                addresses: None
            }
        );
        let mapped = header(Version::V2, addr("10.0.0.1:1"), addr("[::ffff:10.0.0.2]:2"));
        assert_eq!(
            complete(&mapped).addresses,
            Some((addr("10.0.0.1:1"), addr("10.0.0.2:2")))
        );
    }

    #[test]
    fn tlvs_are_skipped() {
        let mut h = header(Version::V2, addr("10.0.0.1:1"), addr("10.0.0.2:2"));
        h[15] += 7;
        h.extend_from_slice(&[0x04, 0, 4, 1, 2, 3, 4]); // PP2_TYPE_NOOP
        assert_eq!(complete(&h).len, h.len());
    }

    #[test]
    fn anything_else_is_invalid() {
        for bad in [
            &b"\x16\x03\x01\x00\x10"[..],
            b"GET / HTTP/1.1\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n",
            b"PROXY TCP4 ::1 ::2 1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 99999\r\n",
            b"PROXY TCP4 10.0.0.1\n",
            // A bare LF inside an UNKNOWN line: its prefixes were refused, so is the line
            // (found by the proxy_protocol fuzz target).
            b"PROXY UNKNOWN \0\0Y M,\n\0\r\n",
            b"PROXYTCP4",
        ] {
            assert_eq!(
                parse(bad),
                Parse::Invalid,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(&[b'P'; 200]), Parse::Invalid);
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x31, 0x11, 0, 12]);
        assert_eq!(parse(&v2), Parse::Invalid, "version 3");
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(
            parse(&short),
            Parse::Invalid,
            "IPv4 addresses need 12 bytes"
        );
        let mut long = V2_SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&long), Parse::Invalid, "too long");
    }
}
