//! Every rule about names, in one place: host names, their normal form, SNI patterns,
//! upstream templates and endpoints.
//!
//! Rules:
//! 1. A host name is letters, digits, `-` and `_` in dot-separated labels of 1 to 63 bytes,
//!    no label starts or ends with `-`, at most 253 bytes without one trailing dot. An IP
//!    literal is never a host name (SNI forbids it).
//! 2. Names are compared in their normal form: lower case, one trailing dot removed.
//! 3. An SNI pattern is an exact host name, or `*.SUFFIX` where `*` is the whole first
//!    label and SUFFIX has at least two labels (`*.com` would be an open forwarder).
//! 4. An upstream is `HOST:PORT`; HOST may be `{sni}` (the name the client asked for) and
//!    PORT may be `{port}` (the port the client connected to). An IPv6 host is bracketed.
//! 5. An endpoint is `HOST`, `HOST:PORT`, or a URL such as `https://HOST/` or
//!    `SASL_SSL://HOST:9092`; without a port it takes the given default.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why a host name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Not a DNS host name.
    #[error("not a valid host name")]
    Invalid,
    /// An IP address, which is never sent as SNI.
    #[error("an IP address, not a host name")]
    IpLiteral,
}

/// Why a pattern, upstream or endpoint was refused. The messages say what is expected;
/// callers add the key and, when it may be shown, the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// `*` somewhere other than as the whole first label.
    #[error("`*` may only stand as the whole first label, as in *.eu-west-2.aws.confluent.cloud")]
    MisplacedWildcard,
    /// A wildcard over a single label.
    #[error("the wildcard is too broad; it needs at least two labels after `*.` (e.g. *.confluent.cloud) so the gateway cannot become an open forwarder")]
    BroadWildcard,
    /// An IP address where an SNI name is expected.
    #[error("an IP address is never sent as SNI; route host names")]
    IpSni,
    /// Not a host name where an SNI name is expected.
    #[error("expected a host name such as pkc-1.example.cloud, or *.example.cloud")]
    BadSni,
    /// An upstream without a port.
    #[error(
        "missing port; expected HOST:PORT, where HOST may be {{sni}} and PORT may be {{port}}"
    )]
    MissingPort,
    /// An upstream port out of range.
    #[error("the port must be 1-65535 or {{port}}")]
    BadUpstreamPort,
    /// Braces other than a lone `{sni}` in the host.
    #[error("only {{sni}} may stand for the host, on its own")]
    BadPlaceholder,
    /// An upstream host that is neither a host name nor an IP.
    #[error("the host is not a valid host name or IP; expected HOST:PORT")]
    BadUpstreamHost,
    /// An endpoint port out of range.
    #[error("the port must be 1-65535; expected HOST[:PORT] or https://HOST")]
    BadEndpointPort,
    /// An endpoint host that is not a host name.
    #[error("the host is not a valid host name; expected HOST[:PORT] or https://HOST")]
    BadEndpointHost,
    /// A listener name with other characters.
    #[error("use 1 to 64 letters, digits, `-` or `_`")]
    BadName,
    /// Not `IP:PORT`.
    #[error("expected IP:PORT, such as 0.0.0.0:9092 or [::]:443")]
    BadAddress,
    /// Not `IP` or `IP:PORT`.
    #[error("expected an IP or IP:PORT, such as 10.0.0.5 or 10.0.0.5:9092")]
    BadPinned,
}

/// A byte that may stand in a label (letters, digits, `_`; `-` is checked apart).
const LABEL: u8 = 1;
/// A byte that may stand in an address literal (hex digits, `.`, `:`, `[`, `]`).
const ADDRESS: u8 = 2;

/// [`LABEL`] and [`ADDRESS`] for every byte.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'_' {
            t[b] |= LABEL;
        }
        if c.is_ascii_hexdigit() || matches!(c, b'.' | b':' | b'[' | b']') {
            t[b] |= ADDRESS;
        }
        b += 1;
    }
    t
};

/// Checks that `name` is a host name (rule 1), and returns it as text. One pass over the
/// bytes with a table, since every ClientHello's name comes through here.
pub fn validate_host(name: &[u8]) -> Result<&str, HostError> {
    let trimmed = name.strip_suffix(b".").unwrap_or(name);
    // Label rules in one pass: lengths, characters, no hyphen at either end of a label.
    let (mut labels_ok, mut address) = (true, ADDRESS);
    let (mut len, mut prev) = (0usize, b'.');
    for &b in trimmed {
        let class = CLASS[usize::from(b)];
        address &= class;
        if b == b'.' {
            labels_ok &= len > 0 && len <= 63 && prev != b'-';
            len = 0;
        } else if class & LABEL != 0 || (b == b'-' && len > 0) {
            len += 1;
        } else if address == 0 {
            // Neither a name nor an address literal.
            return Err(HostError::Invalid);
        } else {
            labels_ok = false;
        }
        prev = b;
    }
    labels_ok &= len > 0 && len <= 63 && prev != b'-' && trimmed.len() <= 253;
    // An address literal is named as such even where it breaks the label rules (IPv6).
    if address != 0 {
        if let Ok(text) = std::str::from_utf8(name) {
            if looks_like_ip(text) {
                return Err(HostError::IpLiteral);
            }
        }
    }
    if !labels_ok {
        return Err(HostError::Invalid);
    }
    std::str::from_utf8(name).map_err(|_| HostError::Invalid)
}

/// False when `text` has a character no address literal has (anything but hex digits,
/// dots, colons and brackets): true of nearly every host name, and far cheaper to check
/// than running the address parsers.
fn may_be_address(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'[' | b']'))
}

/// The address `text` spells, if it is a bare IPv4 or IPv6 literal.
pub fn ip_literal(text: &str) -> Option<IpAddr> {
    may_be_address(text).then(|| text.parse().ok()).flatten()
}

/// True for IPv4 and IPv6 literals (bracketed or not), and for all-digit dotted text that
/// some resolvers would read as an address.
fn looks_like_ip(text: &str) -> bool {
    if !may_be_address(text) {
        return false;
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    bare.parse::<Ipv4Addr>().is_ok()
        || bare.parse::<Ipv6Addr>().is_ok()
        || (!bare.is_empty() && bare.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// The normal form of a name (rule 2). Borrows when the name is already normal.
pub fn normalize_name(name: &str) -> Cow<'_, str> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// What a route matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SniPattern {
    /// Exactly this (normalised) name.
    Exact(Arc<str>),
    /// Any name ending in `.` + this (normalised) suffix, with at least one label in front.
    Wildcard(Arc<str>),
}

impl std::fmt::Display for SniPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SniPattern::Exact(name) => f.write_str(name),
            SniPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Parses and normalises an SNI pattern (rule 3).
pub fn parse_pattern(v: &str) -> Result<SniPattern, NameError> {
    let (wild, name) = match v.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    if name.contains('*') || (!wild && v.starts_with('*')) {
        return Err(NameError::MisplacedWildcard);
    }
    match validate_host(name.as_bytes()) {
        Ok(_) => {}
        Err(HostError::IpLiteral) => return Err(NameError::IpSni),
        Err(HostError::Invalid) => return Err(NameError::BadSni),
    }
    let norm = normalize_name(name);
    if !wild {
        return Ok(SniPattern::Exact(Arc::from(norm.as_ref())));
    }
    if norm.split('.').count() < 2 {
        return Err(NameError::BroadWildcard);
    }
    Ok(SniPattern::Wildcard(Arc::from(norm.as_ref())))
}

/// The host part of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamHost {
    /// A fixed host name (normalised) or IP; shared by the routes that name it.
    Fixed(Arc<str>),
    /// `{sni}`: the name the client asked for.
    Sni,
}

/// The port part of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamPort {
    /// A fixed port.
    Fixed(u16),
    /// `{port}`: the port of the listener the client connected to.
    Listener,
}

/// Where a route sends its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The host, or `{sni}`.
    pub host: UpstreamHost,
    /// The port, or `{port}`.
    pub port: UpstreamPort,
    /// Fixed addresses used instead of resolving the host; port 0 means the upstream's.
    pub pinned: Vec<SocketAddr>,
}

impl Upstream {
    /// An upstream to a fixed host and port, resolved when used.
    pub fn fixed(host: impl Into<Arc<str>>, port: u16) -> Self {
        Upstream {
            host: UpstreamHost::Fixed(host.into()),
            port: UpstreamPort::Fixed(port),
            pinned: Vec::new(),
        }
    }

    /// The host to connect to, given the client's SNI; `None` for `{sni}` without one.
    pub fn host_for<'a>(&'a self, sni: Option<&'a str>) -> Option<&'a str> {
        match &self.host {
            UpstreamHost::Fixed(h) => Some(h),
            UpstreamHost::Sni => sni,
        }
    }

    /// The port to connect to, given the listener's port.
    pub fn port_for(&self, listener_port: u16) -> u16 {
        match self.port {
            UpstreamPort::Fixed(p) => p,
            UpstreamPort::Listener => listener_port,
        }
    }

    /// The addresses to try when pinned, each with its port filled in.
    pub fn pinned_for(&self, listener_port: u16) -> impl Iterator<Item = SocketAddr> + '_ {
        let port = self.port_for(listener_port);
        self.pinned.iter().map(move |a| {
            if a.port() == 0 {
                SocketAddr::new(a.ip(), port)
            } else {
                *a
            }
        })
    }

    /// The pinned addresses for people: an IP alone stands for the upstream's port.
    pub fn pinned_list(&self) -> String {
        let shown: Vec<String> = self
            .pinned
            .iter()
            .map(|a| match (a.port(), a.ip()) {
                (0, IpAddr::V6(ip)) => format!("[{ip}]"),
                (0, ip) => ip.to_string(),
                _ => a.to_string(),
            })
            .collect();
        shown.join(", ")
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            UpstreamHost::Fixed(h) if h.contains(':') => write!(f, "[{h}]")?,
            UpstreamHost::Fixed(h) => f.write_str(h)?,
            UpstreamHost::Sni => f.write_str("{sni}")?,
        }
        match self.port {
            UpstreamPort::Fixed(p) => write!(f, ":{p}"),
            UpstreamPort::Listener => f.write_str(":{port}"),
        }
    }
}

/// Parses `HOST:PORT` with the `{sni}` and `{port}` placeholders (rule 4).
pub fn parse_upstream(v: &str) -> Result<Upstream, NameError> {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        rest.split_once("]:").ok_or(NameError::MissingPort)?
    } else {
        v.rsplit_once(':').ok_or(NameError::MissingPort)?
    };
    let port = match port {
        "{port}" => UpstreamPort::Listener,
        p => match p.parse::<u16>() {
            Ok(n) if n > 0 => UpstreamPort::Fixed(n),
            _ => return Err(NameError::BadUpstreamPort),
        },
    };
    let host = match host {
        "{sni}" => UpstreamHost::Sni,
        h if h.parse::<IpAddr>().is_ok() => UpstreamHost::Fixed(Arc::from(h)),
        h if h.contains('{') || h.contains('}') => return Err(NameError::BadPlaceholder),
        h => match validate_host(h.as_bytes()) {
            Ok(_) => UpstreamHost::Fixed(Arc::from(normalize_name(h).as_ref())),
            Err(_) => return Err(NameError::BadUpstreamHost),
        },
    };
    Ok(Upstream {
        host,
        port,
        pinned: Vec::new(),
    })
}

/// Parses an endpoint (rule 5) into its normalised host and port.
pub fn parse_endpoint(v: &str, default_port: u16) -> Result<(String, u16), NameError> {
    let rest = v.split_once("://").map_or(v, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or("");
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(n) if n > 0 => (h, n),
            _ => return Err(NameError::BadEndpointPort),
        },
        None => (rest, default_port),
    };
    if validate_host(host.as_bytes()).is_err() && host.parse::<IpAddr>().is_err() {
        return Err(NameError::BadEndpointHost);
    }
    Ok((normalize_name(host).into_owned(), port))
}

/// Checks a listener or cluster name: 1 to 64 letters, digits, `-` or `_`.
pub fn check_name(v: &str) -> Result<(), NameError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(NameError::BadName)
    }
}

/// Parses an address to bind: `IP:PORT`.
pub fn parse_listen_address(v: &str) -> Result<SocketAddr, NameError> {
    v.parse().map_err(|_| NameError::BadAddress)
}

/// Parses a pinned address: `IP:PORT`, or `IP` alone (port 0: the upstream's port).
pub fn parse_pinned(v: &str) -> Result<SocketAddr, NameError> {
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok(addr);
    }
    v.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 0))
        .map_err(|_| NameError::BadPinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules as first written, label by label: the one-pass check must agree.
    fn reference(name: &[u8]) -> Result<&str, HostError> {
        let text = std::str::from_utf8(name).map_err(|_| HostError::Invalid)?;
        if looks_like_ip(text) {
            return Err(HostError::IpLiteral);
        }
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() || trimmed.len() > 253 {
            return Err(HostError::Invalid);
        }
        for label in trimmed.split('.') {
            let ok_len = !label.is_empty() && label.len() <= 63;
            let ok_chars = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok_len || !ok_chars || label.starts_with('-') || label.ends_with('-') {
                return Err(HostError::Invalid);
            }
        }
        Ok(text)
    }

    #[test]
    fn the_one_pass_check_agrees_with_the_rules_label_by_label() {
        // Every string of up to 4 bytes over an alphabet that hits each rule, then longer
        // pseudo-random ones, and names at the length limits.
        let alphabet = b"a-.:_1fZ[]\xff ";
        let mut cases: Vec<Vec<u8>> = vec![Vec::new()];
        let mut frontier = cases.clone();
        for _ in 0..4 {
            frontier = frontier
                .iter()
                .flat_map(|c| {
                    alphabet.iter().map(move |&b| {
                        let mut n = c.clone();
                        n.push(b);
                        n
                    })
                })
                .collect();
            cases.extend(frontier.iter().cloned());
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (x % 80) as usize;
            let mut n = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                n.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            cases.push(n);
        }
        for l in [62, 63, 64] {
            cases.push(format!("{}.test", "a".repeat(l)).into_bytes());
            cases.push(format!("{}-.test", "a".repeat(l)).into_bytes());
        }
        for total in [252, 253, 254] {
            let mut n = "a.".repeat(total / 2).into_bytes();
            n.truncate(total);
            cases.push(n.clone());
            n.push(b'.');
            cases.push(n);
        }
        for c in &cases {
            assert_eq!(
                validate_host(c),
                reference(c),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(validate_host(b"A.test."), Ok("A.test."));
        assert_eq!(validate_host(b"a_b.test"), Ok("a_b.test"));
        for bad in [
            &b""[..],
            b".",
            b"a..b",
            b"-a.test",
            b"a-.test",
            b"a b",
            b"\xff",
        ] {
            assert_eq!(validate_host(bad), Err(HostError::Invalid), "{bad:?}");
        }
        for ip in [
            &b"10.0.0.1"[..],
            b"::1",
            b"[::1]",
            b"1.2.3",
            b"10.0.0.1.",
            b"FE80::1",
            b"[2001:db8::a]",
            b"::ffff:10.0.0.1",
        ] {
            assert_eq!(validate_host(ip), Err(HostError::IpLiteral), "{ip:?}");
        }
        assert_eq!(ip_literal("10.0.0.1"), Some([10, 0, 0, 1].into()));
        assert_eq!(ip_literal("::1"), Some(Ipv6Addr::LOCALHOST.into()));
        assert_eq!(ip_literal("pkc-1.test"), None);
        assert_eq!(ip_literal("cafe.bead"), None);
        // Names made only of hex digits are names, not addresses.
        for name in ["cafe.bead", "add", "dead.beef."] {
            assert_eq!(validate_host(name.as_bytes()), Ok(name));
        }
        assert!(validate_host("a".repeat(64).as_bytes()).is_err());
        assert!(validate_host(format!("{}.t", "a".repeat(63)).as_bytes()).is_ok());
    }

    #[test]
    fn normal_form() {
        assert_eq!(normalize_name("Pkc-1.Test."), "pkc-1.test");
        assert!(matches!(normalize_name("a.test"), Cow::Borrowed(_)));
    }

    #[test]
    fn patterns() {
        assert_eq!(
            parse_pattern("*.EU.Example.test").unwrap(),
            SniPattern::Wildcard("eu.example.test".into())
        );
        assert_eq!(
            parse_pattern("Pkc-1.test.").unwrap(),
            SniPattern::Exact("pkc-1.test".into())
        );
        let cases = [
            ("*", NameError::MisplacedWildcard),
            ("*.test", NameError::BroadWildcard),
            ("a.*.test", NameError::MisplacedWildcard),
            ("*a.test", NameError::MisplacedWildcard),
            ("**.a.test", NameError::MisplacedWildcard),
            ("1.2.3.4", NameError::IpSni),
            ("a..test", NameError::BadSni),
            ("", NameError::BadSni),
        ];
        for (bad, want) in cases {
            assert_eq!(parse_pattern(bad), Err(want), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("SASL_SSL://PKC-1.x.test:9092", 9092).unwrap(),
            ("pkc-1.x.test".into(), 9092)
        );
        assert_eq!(
            parse_endpoint("https://psrc-1.x.test/", 443).unwrap(),
            ("psrc-1.x.test".into(), 443)
        );
        assert_eq!(
            parse_endpoint("pkac-1.x.test", 443).unwrap(),
            ("pkac-1.x.test".into(), 443)
        );
        assert_eq!(
            parse_endpoint("https://", 443),
            Err(NameError::BadEndpointHost)
        );
        assert_eq!(
            parse_endpoint("a.test:0", 443),
            Err(NameError::BadEndpointPort)
        );
    }

    #[test]
    fn upstreams() {
        for (text, shown) in [
            ("{sni}:{port}", "{sni}:{port}"),
            ("A.test:9092", "a.test:9092"),
            ("[::1]:443", "[::1]:443"),
            ("10.0.0.1:443", "10.0.0.1:443"),
        ] {
            assert_eq!(parse_upstream(text).unwrap().to_string(), shown);
        }
        let cases = [
            ("a.test", NameError::MissingPort),
            ("a.test:0", NameError::BadUpstreamPort),
            ("a.test:99999", NameError::BadUpstreamPort),
            ("x{sni}:1", NameError::BadPlaceholder),
            ("{sni}:{sni}", NameError::BadUpstreamPort),
            (":1", NameError::BadUpstreamHost),
            ("[::1]", NameError::MissingPort),
        ];
        for (bad, want) in cases {
            assert_eq!(parse_upstream(bad), Err(want), "{bad}");
        }
    }

    #[test]
    fn templates_fill_in() {
        let u = parse_upstream("{sni}:{port}").unwrap();
        assert_eq!(u.host_for(Some("a.test")), Some("a.test"));
        assert_eq!(u.host_for(None), None);
        assert_eq!(u.port_for(443), 443);
        let mut p = parse_upstream("a.test:9092").unwrap();
        p.pinned = vec![
            parse_pinned("10.0.0.5").unwrap(),
            parse_pinned("[fd00::5]:19092").unwrap(),
        ];
        let addrs: Vec<String> = p.pinned_for(1).map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.5:9092", "[fd00::5]:19092"]);
        assert_eq!(p.pinned_list(), "10.0.0.5, [fd00::5]:19092");
    }

    #[test]
    fn names_and_addresses() {
        assert!(check_name("kafka_1-a").is_ok());
        assert_eq!(check_name("a b"), Err(NameError::BadName));
        assert_eq!(check_name(""), Err(NameError::BadName));
        assert!(parse_listen_address("[::]:443").is_ok());
        assert_eq!(parse_listen_address("0.0.0.0"), Err(NameError::BadAddress));
        assert_eq!(parse_pinned("ten"), Err(NameError::BadPinned));
    }
}
