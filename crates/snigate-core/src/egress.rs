//! Egress through a forward proxy: the `egress_proxy:` URL, the HTTP CONNECT request and
//! the reading of its answer. The SOCKS5 handshake itself is tokio-socks', in the runtime.
//!
//! Rules:
//! 1. `egress_proxy:` takes `http://[user:pass@]host:port` (HTTP CONNECT, with a Basic
//!    `Proxy-Authorization` header when a user is given) or `socks5://[user:pass@]host:port`
//!    (RFC 1928, with RFC 1929 username and password when given). The port is required.
//!    User and password are percent-decoded, so a `@` or `:` in them is written `%40`, `%3A`.
//!    A user may not contain `:` (HTTP Basic auth could not carry it).
//! 2. A route's own `egress_proxy:` wins over the gateway's; `none` means a direct connect.
//! 3. The proxy is asked for the upstream's *name*; snigate never resolves it. An upstream
//!    written as an IP address is sent as an address.
//! 4. The proxy's label (`scheme://host:port`, no credentials) is what logs, metrics and
//!    `/routes` show. Neither `Debug` nor `Display` of a proxy ever shows the credentials.

use crate::config::Secret;
use base64::Engine;
use std::fmt;
use std::sync::Arc;

/// How a proxy tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// HTTP CONNECT.
    Http,
    /// SOCKS5.
    Socks5,
}

impl Scheme {
    /// The URL scheme.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Socks5 => "socks5",
        }
    }
}

/// A forward proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct EgressProxy {
    /// How it tunnels.
    pub scheme: Scheme,
    /// Its host: a name or an IP address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// User and password, if it needs them.
    pub auth: Option<(Secret, Secret)>,
    /// `scheme://host:port`: what logs and metrics show.
    pub label: Arc<str>,
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)?;
        if self.auth.is_some() {
            f.write_str(" (with credentials)")?;
        }
        Ok(())
    }
}

impl fmt::Display for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// Where a route's connections go out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Egress {
    /// The gateway's `egress_proxy`, or directly when it has none.
    #[default]
    Inherit,
    /// Directly (`egress_proxy: none`).
    Direct,
    /// Through this proxy.
    Via(Arc<EgressProxy>),
}

impl Egress {
    /// The proxy to use, given the gateway's default.
    pub fn resolve<'a>(
        &'a self,
        default: Option<&'a Arc<EgressProxy>>,
    ) -> Option<&'a Arc<EgressProxy>> {
        match self {
            Egress::Inherit => default,
            Egress::Direct => None,
            Egress::Via(p) => Some(p),
        }
    }
}

/// Why an `egress_proxy:` value is refused. No message shows the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Neither `http://` nor `socks5://`.
    #[error("`{0}` is not a proxy URL; write http://[user:pass@]host:port (HTTP CONNECT) or socks5://[user:pass@]host:port, or none")]
    Scheme(String),
    /// `https://`: TLS to the proxy itself.
    #[error("`{0}`: https:// (TLS to the proxy itself) is not supported; snigate sends CONNECT to the proxy in plain HTTP, which is what nearly every forward proxy listens for, and the tunnelled stream stays end-to-end TLS from the client anyway; write http://[user:pass@]host:port")]
    Https(String),
    /// No host, or no valid port.
    #[error("{0}: give the proxy as host:port, for example http://proxy.corp.test:3128")]
    Address(String),
    /// A path, query or fragment after the address.
    #[error("{0}: a proxy URL has no path; write scheme://[user:pass@]host:port")]
    Path(String),
    /// A user without a password.
    #[error("{0}: a user needs a password, as user:pass (both from the environment, as ${{PROXY_USER}}:${{PROXY_PASSWORD}}); a proxy without authentication takes neither")]
    NoPassword(String),
    /// An empty user, a `:` in the user, or a bad percent-escape.
    #[error("{0}: credentials are user:pass, percent-encoded (`@` as %40, `:` as %3A), and the user holds no `:`")]
    Credentials(String),
    /// SOCKS5 limits each of user and password to 255 bytes (RFC 1929).
    #[error("{0}: a SOCKS5 user and password are at most 255 bytes each (RFC 1929)")]
    TooLong(String),
}

/// Decodes `%XX` escapes.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl EgressProxy {
    /// Parses a proxy URL (see the module's rules). Errors name the URL without its
    /// credentials.
    pub fn parse(url: &str) -> Result<EgressProxy, EgressError> {
        EgressProxy::parse_shown_as(url, &redact(url))
    }

    /// As [`EgressProxy::parse`], with errors naming the value as `shown` (for a value
    /// that came from the environment and must not be shown at all).
    pub fn parse_shown_as(url: &str, shown: &str) -> Result<EgressProxy, EgressError> {
        let shown = shown.to_owned();
        let (scheme, rest) = match url.split_once("://") {
            Some(("http", rest)) => (Scheme::Http, rest),
            Some(("socks5" | "socks5h", rest)) => (Scheme::Socks5, rest),
            Some((s, _)) if s.eq_ignore_ascii_case("https") => {
                return Err(EgressError::Https(shown))
            }
            _ => return Err(EgressError::Scheme(shown)),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let address_part = rest.rsplit_once('@').map_or(rest, |(_, a)| a);
        if address_part.contains(['/', '?', '#']) {
            return Err(EgressError::Path(shown));
        }
        let (auth, address) = match rest.rsplit_once('@') {
            Some((creds, address)) => {
                let (user, pass) = creds
                    .split_once(':')
                    .ok_or_else(|| EgressError::NoPassword(shown.clone()))?;
                let user =
                    percent_decode(user).ok_or_else(|| EgressError::Credentials(shown.clone()))?;
                let pass =
                    percent_decode(pass).ok_or_else(|| EgressError::Credentials(shown.clone()))?;
                if user.is_empty() || user.contains(':') {
                    return Err(EgressError::Credentials(shown));
                }
                if scheme == Scheme::Socks5 && (user.len() > 255 || pass.len() > 255) {
                    return Err(EgressError::TooLong(shown));
                }
                (Some((Secret::new(user), Secret::new(pass))), address)
            }
            None => (None, rest),
        };
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => return Err(EgressError::Address(shown)),
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| EgressError::Address(shown.clone()))?;
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(EgressError::Address(shown));
        }
        let label = Arc::from(format!("{}://{}", scheme.as_str(), host_port(host, port)));
        Ok(EgressProxy {
            scheme,
            host: host.to_owned(),
            port,
            auth,
            label,
        })
    }
}

/// A URL with any credentials replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, address)) => format!("{scheme}://***@{address}"),
            None => url.to_owned(),
        },
        None if url.contains('@') => "***".to_owned(),
        None => url.to_owned(),
    }
}

/// `host:port`, with an IPv6 address in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The HTTP CONNECT request for `host:port`, with Basic proxy credentials when given.
pub fn connect_request(host: &str, port: u16, auth: Option<&(Secret, Secret)>) -> Vec<u8> {
    let target = host_port(host, port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, pass)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            user.expose(),
            pass.expose()
        ));
        req.push_str("Proxy-Authorization: Basic ");
        req.push_str(&token);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// The most bytes a CONNECT answer's head may take.
pub const MAX_REPLY_HEAD: usize = 8 * 1024;

/// What a proxy's answer to CONNECT says so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectReply {
    /// The head is not complete yet: read more.
    Partial,
    /// The tunnel is open; the head took this many bytes (any after it are the upstream's).
    Open(usize),
    /// The proxy refused, with this status and reason.
    Refused(u16, String),
}

/// Why a proxy's answer is not HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// httparse refused it.
    #[error("the proxy's answer is not an HTTP response ({0})")]
    Malformed(String),
    /// No end of the head within [`MAX_REPLY_HEAD`].
    #[error("the proxy's answer head is longer than {MAX_REPLY_HEAD} bytes")]
    TooLong,
}

/// Reads the answer to a CONNECT in `buf` (everything received so far): a 2xx status opens
/// the tunnel, anything else refuses it.
pub fn connect_reply(buf: &[u8]) -> Result<ConnectReply, ReplyError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let code = resp.code.unwrap_or(0);
            if (200..300).contains(&code) {
                Ok(ConnectReply::Open(len))
            } else {
                Ok(ConnectReply::Refused(
                    code,
                    resp.reason.unwrap_or("").to_owned(),
                ))
            }
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REPLY_HEAD => Err(ReplyError::TooLong),
        Ok(httparse::Status::Partial) => Ok(ConnectReply::Partial),
        Err(e) => Err(ReplyError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_never_show_credentials() {
        let p = EgressProxy::parse("http://alice:s3cr%40t@proxy.corp.test:3128").unwrap();
        assert_eq!(p.scheme, Scheme::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp.test", 3128));
        let (user, pass) = p.auth.clone().unwrap();
        assert_eq!((user.expose(), pass.expose()), ("alice", "s3cr@t"));
        assert_eq!(&*p.label, "http://proxy.corp.test:3128");
        for shown in [format!("{p:?}"), p.to_string()] {
            assert!(
                !shown.contains("s3cr") && !shown.contains("alice"),
                "{shown}"
            );
        }
        let s = EgressProxy::parse("socks5://[2001:db8::1]:1080/").unwrap();
        assert_eq!(
            (s.scheme, s.host.as_str(), s.port),
            (Scheme::Socks5, "2001:db8::1", 1080)
        );
        assert_eq!(&*s.label, "socks5://[2001:db8::1]:1080");
        assert!(s.auth.is_none());
    }

    #[test]
    fn bad_proxy_urls_are_refused_without_the_password() {
        let cases = [
            ("ftp://u:hunter2@p.test:21", "is not a proxy URL"),
            ("proxy.test:3128", "is not a proxy URL"),
            ("http://u:hunter2@p.test", "host:port"),
            ("http://u:hunter2@p.test:0", "host:port"),
            ("http://u:hunter2@p.test:99999", "host:port"),
            ("http://u:hunter2@:3128", "host:port"),
            ("http://u:hunter2@p.test:3128/path", "no path"),
            ("http://hunter2@p.test:3128", "a user needs a password"),
            (
                "https://u:hunter2@p.test:3128",
                "https:// (TLS to the proxy itself) is not supported",
            ),
            ("HTTPS://u:hunter2@p.test:3128", "is not supported"),
            ("http://u:hunter2%zz@p.test:3128", "user:pass"),
        ];
        for (url, want) in cases {
            let e = EgressProxy::parse(url).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: the password leaks: {e}");
        }
        let p = EgressProxy::parse("http://u:pa/ss?#@p.test:3128").unwrap();
        assert_eq!(
            p.auth.unwrap().1.expose(),
            "pa/ss?#",
            "only the address may not have a path"
        );
        let e = EgressProxy::parse("http://u%3Ax:pw@p.test:3128").unwrap_err();
        assert!(matches!(e, EgressError::Credentials(_)), "{e}");
        let e = EgressProxy::parse_shown_as("hunter2", "the value of ${PROXY} (not shown)")
            .unwrap_err();
        assert_eq!(
            e.to_string().split(';').next(),
            Some("`the value of ${PROXY} (not shown)` is not a proxy URL")
        );
        let long = format!("socks5://u:{}@p.test:1080", "x".repeat(256));
        assert!(matches!(
            EgressProxy::parse(&long),
            Err(EgressError::TooLong(_))
        ));
        assert!(EgressProxy::parse(&long.replace("socks5", "http")).is_ok());
    }

    #[test]
    fn routes_inherit_override_or_opt_out() {
        let gw = Arc::new(EgressProxy::parse("http://gw.test:3128").unwrap());
        let own = Arc::new(EgressProxy::parse("socks5://own.test:1080").unwrap());
        assert_eq!(Egress::Inherit.resolve(Some(&gw)), Some(&gw));
        assert_eq!(Egress::Inherit.resolve(None), None);
        assert_eq!(Egress::Direct.resolve(Some(&gw)), None);
        assert_eq!(Egress::Via(own.clone()).resolve(Some(&gw)), Some(&own));
    }

    #[test]
    fn the_connect_request_names_the_upstream_and_carries_basic_auth() {
        let auth = (Secret::new("alice"), Secret::new("pw"));
        let req = connect_request("b0-pkc.example.test", 9092, Some(&auth));
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "CONNECT b0-pkc.example.test:9092 HTTP/1.1\r\nHost: b0-pkc.example.test:9092\r\n\
Proxy-Authorization: Basic YWxpY2U6cHc=\r\n\r\n"
        );
        let req = connect_request("2001:db8::5", 443, None);
        assert!(req.starts_with(b"CONNECT [2001:db8::5]:443 HTTP/1.1\r\n"));
    }

    #[test]
    fn connect_answers_are_read_with_httparse() {
        let ok = b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03";
        assert_eq!(connect_reply(ok), Ok(ConnectReply::Open(39)));
        assert_eq!(connect_reply(&ok[..20]), Ok(ConnectReply::Partial));
        let denied =
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n";
        assert_eq!(
            connect_reply(denied),
            Ok(ConnectReply::Refused(
                407,
                "Proxy Authentication Required".into()
            ))
        );
        assert!(matches!(
            connect_reply(b"SSH-2.0-OpenSSH\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        let endless = [b"HTTP/1.1 200 OK\r\n".as_slice(), &[b'X'; MAX_REPLY_HEAD]].concat();
        assert_eq!(connect_reply(&endless), Err(ReplyError::TooLong));
    }
}
