//! A pure, incremental parser for the TLS ClientHello.
//!
//! [`parse`] looks at the bytes a client has sent so far and answers one of:
//! - [`Parse::Complete`]: the whole ClientHello is present; its SNI and ALPN are extracted;
//! - [`Parse::Incomplete`]: everything seen so far is valid, more bytes are needed;
//! - [`Parse::Invalid`]: this is not a ClientHello snigate will route, with the [`Reject`] reason.
//!
//! Rules it keeps:
//! - No I/O and no panics; every index is checked.
//! - Nothing is allocated from a length the peer declares. The only allocation is the
//!   reassembly of a handshake message that spans several records, and that is sized by
//!   the bytes actually received, capped at [`MAX_HELLO_LEN`].
//! - Parsing is bounded by the handshake length, so a hello that is cut short right after
//!   its compression methods is `Incomplete`, never a complete hello without extensions.
//! - Every strict prefix of a valid hello is `Incomplete`: a check fails only on bytes
//!   that are present.

use crate::names::{validate_host, HostError};

/// Largest ClientHello handshake message accepted (body, without its 4-byte header).
pub const MAX_HELLO_LEN: usize = 16 * 1024;
/// Largest number of bytes snigate buffers before giving up on a hello. This leaves room for
/// record headers when a client splits its hello over many small records.
pub const MAX_BUFFERED: usize = MAX_HELLO_LEN + 4 + 64 * RECORD_HEADER_LEN;

const RECORD_HEADER_LEN: usize = 5;
const CONTENT_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;
const MAX_RECORD_LEN: usize = 16 * 1024;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const MAX_ALPN_PROTOCOLS: usize = 8;

/// Why a connection's first bytes were refused. `as_str` gives the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The first byte is not a TLS handshake record.
    NotTls,
    /// An SSLv2-format ClientHello.
    SslV2,
    /// A record header with a bad version or length.
    BadRecord,
    /// The first handshake message is not a ClientHello.
    NotClientHello,
    /// The ClientHello is larger than [`MAX_HELLO_LEN`] or needs too many records.
    TooLarge,
    /// The ClientHello body does not follow the TLS grammar.
    Malformed,
    /// The server_name extension is malformed or names an invalid host.
    BadSni,
    /// The server_name is an IP literal, which SNI forbids.
    IpLiteralSni,
}

impl Reject {
    /// Every reason, for pre-registering metric labels.
    pub const ALL: [Reject; 8] = [
        Reject::NotTls,
        Reject::SslV2,
        Reject::BadRecord,
        Reject::NotClientHello,
        Reject::TooLarge,
        Reject::Malformed,
        Reject::BadSni,
        Reject::IpLiteralSni,
    ];

    /// Short snake_case label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NotTls => "not_tls",
            Reject::SslV2 => "sslv2",
            Reject::BadRecord => "bad_record",
            Reject::NotClientHello => "not_client_hello",
            Reject::TooLarge => "too_large",
            Reject::Malformed => "malformed",
            Reject::BadSni => "bad_sni",
            Reject::IpLiteralSni => "ip_literal_sni",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a complete ClientHello told us.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// The host_name from the server_name extension, as sent (not yet lower-cased).
    pub sni: Option<String>,
    /// The ALPN protocol names offered, at most [`MAX_ALPN_PROTOCOLS`], for logs.
    pub alpn: Vec<String>,
    /// Bytes of the input that carried the hello: all its records, headers included.
    pub record_bytes: usize,
    /// Length of the handshake message body (the "ClientHello size").
    pub hello_len: usize,
}

/// The parser's answer for the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// The whole ClientHello is present.
    Complete(ClientHello),
    /// Valid so far; more bytes are needed.
    Incomplete,
    /// Not a routable ClientHello.
    Invalid(Reject),
}

/// Parses the start of a client's byte stream. See the module docs for the contract.
pub fn parse(input: &[u8]) -> Parse {
    match parse_inner(input) {
        Ok(Some(hello)) => Parse::Complete(hello),
        Ok(None) => Parse::Incomplete,
        Err(reason) => Parse::Invalid(reason),
    }
}

/// `Ok(None)` means incomplete.
fn parse_inner(input: &[u8]) -> Result<Option<ClientHello>, Reject> {
    let Some(&first) = input.first() else {
        return Ok(None);
    };
    if first != CONTENT_HANDSHAKE {
        // SSLv2 hello: 2-byte header with the top bit set, then msg type 1.
        if first & 0x80 != 0 && input.get(2).is_none_or(|&t| t == 1) {
            return Err(if input.len() >= 3 {
                Reject::SslV2
            } else {
                Reject::NotTls
            });
        }
        return Err(Reject::NotTls);
    }

    // Fast path: the whole handshake message sits in the first record.
    let header = match record_header(input)? {
        Some(h) => h,
        None => return Ok(None),
    };
    let first_payload_end = RECORD_HEADER_LEN + header.len;
    let available = &input[RECORD_HEADER_LEN..input.len().min(first_payload_end)];
    let Some(hs_len) = handshake_len(available)? else {
        // Fewer than 4 handshake bytes: they may continue in the next record.
        if input.len() < first_payload_end {
            return Ok(None);
        }
        return reassemble(input);
    };
    if 4 + hs_len <= header.len {
        if available.len() < 4 + hs_len {
            return Ok(None);
        }
        let body = &available[4..4 + hs_len];
        return parse_body(body).map(|mut hello| {
            // The record may carry more than the hello, not all of it received yet.
            hello.record_bytes = first_payload_end.min(input.len());
            hello.hello_len = hs_len;
            Some(hello)
        });
    }
    reassemble(input)
}

struct RecordHeader {
    len: usize,
}

/// Reads a record header at the start of `input`. `Ok(None)` if fewer than 5 bytes.
fn record_header(input: &[u8]) -> Result<Option<RecordHeader>, Reject> {
    if let Some(&t) = input.first() {
        if t != CONTENT_HANDSHAKE {
            return Err(Reject::BadRecord);
        }
    }
    if let Some(&major) = input.get(1) {
        if major != 3 {
            return Err(Reject::BadRecord);
        }
    }
    if let Some(&minor) = input.get(2) {
        if minor > 4 {
            return Err(Reject::BadRecord);
        }
    }
    let (Some(&hi), Some(&lo)) = (input.get(3), input.get(4)) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(Reject::BadRecord);
    }
    Ok(Some(RecordHeader { len }))
}

/// Reads the handshake header from the start of the handshake byte stream.
/// `Ok(None)` if fewer than 4 bytes are present.
fn handshake_len(hs: &[u8]) -> Result<Option<usize>, Reject> {
    if let Some(&t) = hs.first() {
        if t != HANDSHAKE_CLIENT_HELLO {
            return Err(Reject::NotClientHello);
        }
    }
    let (Some(&a), Some(&b), Some(&c)) = (hs.get(1), hs.get(2), hs.get(3)) else {
        return Ok(None);
    };
    let len = (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c);
    if len > MAX_HELLO_LEN {
        return Err(Reject::TooLarge);
    }
    Ok(Some(len))
}

/// Slow path: the handshake message spans several records. Copies the payloads seen so far
/// (bounded by the input length, itself capped by the caller) and parses once complete.
fn reassemble(input: &[u8]) -> Result<Option<ClientHello>, Reject> {
    let mut hs: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut needed: Option<usize> = None;
    loop {
        let Some(header) = record_header(&input[pos..])? else {
            return Ok(None);
        };
        let start = pos + RECORD_HEADER_LEN;
        let end = start + header.len;
        let payload = &input[start..input.len().min(end)];
        let want = needed.map_or(usize::MAX, |n| n.saturating_sub(hs.len()));
        hs.extend_from_slice(&payload[..payload.len().min(want)]);
        if needed.is_none() {
            needed = handshake_len(&hs)?.map(|n| n + 4);
        }
        if let Some(total) = needed {
            if hs.len() >= total {
                let body = &hs[4..total];
                let mut hello = parse_body(body)?;
                // The hello ends inside this record; the rest of the record is not ours to judge.
                hello.record_bytes = end.min(input.len());
                hello.hello_len = total - 4;
                return Ok(Some(hello));
            }
        }
        if input.len() < end {
            return Ok(None);
        }
        pos = end;
        if pos >= MAX_BUFFERED {
            return Err(Reject::TooLarge);
        }
    }
}

/// A bounds-checked reader over a complete body. Running out of bytes here is `Malformed`,
/// because the body's length is already known to be fully present.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Reject> {
        if n > self.buf.len() {
            return Err(Reject::Malformed);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Reject> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Reject> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self) -> Result<&'a [u8], Reject> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], Reject> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Parses a complete ClientHello body (after the 4-byte handshake header).
fn parse_body(body: &[u8]) -> Result<ClientHello, Reject> {
    let mut r = Reader { buf: body };
    let version = r.u16()?;
    if version >> 8 != 3 {
        return Err(Reject::Malformed);
    }
    r.take(32)?; // random
    let session_id = r.vec8()?;
    if session_id.len() > 32 {
        return Err(Reject::Malformed);
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(Reject::Malformed);
    }
    let compression = r.vec8()?;
    if compression.is_empty() {
        return Err(Reject::Malformed);
    }
    let mut hello = ClientHello::default();
    if r.is_empty() {
        return Ok(hello); // a legal hello without extensions
    }
    let mut exts = Reader { buf: r.vec16()? };
    if !r.is_empty() {
        return Err(Reject::Malformed);
    }
    let mut seen_sni = false;
    let mut seen_alpn = false;
    while !exts.is_empty() {
        let ext_type = exts.u16()?;
        let data = exts.vec16()?;
        match ext_type {
            EXT_SERVER_NAME => {
                if seen_sni {
                    return Err(Reject::BadSni);
                }
                seen_sni = true;
                hello.sni = parse_server_name(data)?;
            }
            EXT_ALPN => {
                if seen_alpn {
                    return Err(Reject::Malformed);
                }
                seen_alpn = true;
                hello.alpn = parse_alpn(data)?;
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// Parses the server_name extension body. An empty extension (as a server echoes it) gives `None`.
fn parse_server_name(data: &[u8]) -> Result<Option<String>, Reject> {
    if data.is_empty() {
        return Ok(None);
    }
    let mut outer = Reader { buf: data };
    let list = outer.vec16().map_err(|_| Reject::BadSni)?;
    if !outer.is_empty() || list.is_empty() {
        return Err(Reject::BadSni);
    }
    let mut r = Reader { buf: list };
    let mut host = None;
    while !r.is_empty() {
        let name_type = r.u8().map_err(|_| Reject::BadSni)?;
        let name = r.vec16().map_err(|_| Reject::BadSni)?;
        if name_type != 0 {
            continue; // unknown name types are skipped, per RFC 6066
        }
        if host.is_some() {
            return Err(Reject::BadSni); // at most one host_name
        }
        let name = validate_host(name).map_err(|e| match e {
            HostError::IpLiteral => Reject::IpLiteralSni,
            HostError::Invalid => Reject::BadSni,
        })?;
        host = Some(name.to_owned());
    }
    Ok(host)
}

/// Parses the ALPN extension: a non-empty list of non-empty protocol names.
fn parse_alpn(data: &[u8]) -> Result<Vec<String>, Reject> {
    let mut outer = Reader { buf: data };
    let list = outer.vec16()?;
    if !outer.is_empty() || list.is_empty() {
        return Err(Reject::Malformed);
    }
    let mut r = Reader { buf: list };
    let mut out = Vec::new();
    while !r.is_empty() {
        let proto = r.vec8()?;
        if proto.is_empty() {
            return Err(Reject::Malformed);
        }
        if out.len() < MAX_ALPN_PROTOCOLS {
            out.push(String::from_utf8_lossy(proto).into_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal ClientHello handshake message with the given extensions.
    fn hello_body(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[7u8; 32]);
        b.push(0); // session id
        b.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        b.extend_from_slice(&[1, 0]); // null compression
        if !exts.is_empty() {
            let mut e = Vec::new();
            for (t, d) in exts {
                e.extend_from_slice(&t.to_be_bytes());
                e.extend_from_slice(&(d.len() as u16).to_be_bytes());
                e.extend_from_slice(d);
            }
            b.extend_from_slice(&(e.len() as u16).to_be_bytes());
            b.extend_from_slice(&e);
        }
        b
    }

    fn sni_ext(name: &[u8]) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name);
        let mut d = (entry.len() as u16).to_be_bytes().to_vec();
        d.extend_from_slice(&entry);
        (EXT_SERVER_NAME, d)
    }

    fn handshake(body: &[u8]) -> Vec<u8> {
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(body);
        hs
    }

    /// Wraps handshake bytes into records of at most `chunk` bytes.
    fn records(hs: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in hs.chunks(chunk) {
            out.extend_from_slice(&[0x16, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn sni_of(input: &[u8]) -> Option<String> {
        match parse(input) {
            Parse::Complete(h) => h.sni,
            other => panic!("expected complete, got {other:?}"),
        }
    }

    #[test]
    fn extracts_sni_and_alpn() {
        let alpn = (EXT_ALPN, vec![0, 6, 2, b'h', b'2', 2, b'h', b'3']);
        let hs = handshake(&hello_body(&[sni_ext(b"b0-pkc-1.test"), alpn]));
        let input = records(&hs, 16384);
        match parse(&input) {
            Parse::Complete(h) => {
                assert_eq!(h.sni.as_deref(), Some("b0-pkc-1.test"));
                assert_eq!(h.alpn, vec!["h2", "h3"]);
                assert_eq!(h.record_bytes, input.len());
                assert_eq!(h.hello_len, hs.len() - 4);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let hs = handshake(&hello_body(&[sni_ext(b"a.test")]));
        for chunk in [16384, 50, 7, 1] {
            let input = records(&hs, chunk);
            for n in 0..input.len() {
                assert_eq!(
                    parse(&input[..n]),
                    Parse::Incomplete,
                    "chunk {chunk} len {n}"
                );
            }
            assert_eq!(sni_of(&input).as_deref(), Some("a.test"));
        }
    }

    #[test]
    fn hello_without_extensions_is_complete_only_at_its_end() {
        let hs = handshake(&hello_body(&[]));
        let input = records(&hs, 16384);
        assert_eq!(sni_of(&input), None);
        assert_eq!(parse(&input[..input.len() - 1]), Parse::Incomplete);
    }

    #[test]
    fn bytes_after_the_hello_are_ignored() {
        let hs = handshake(&hello_body(&[sni_ext(b"a.test")]));
        let mut input = records(&hs, 16384);
        let len = input.len();
        input.extend_from_slice(&[0x17, 3, 3, 0, 5, 1, 2, 3]);
        match parse(&input) {
            Parse::Complete(h) => assert_eq!(h.record_bytes, len),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn record_bytes_never_exceed_the_input() {
        // A record longer than the hello it carries, cut right after the hello.
        let hs = handshake(&hello_body(&[sni_ext(b"a.test")]));
        let mut input = vec![0x16, 3, 1];
        input.extend_from_slice(&((hs.len() + 10) as u16).to_be_bytes());
        input.extend_from_slice(&hs);
        match parse(&input) {
            Parse::Complete(h) => assert_eq!(h.record_bytes, input.len()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_non_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parse::Invalid(Reject::NotTls));
        assert_eq!(parse(b"\x00\x01garbage"), Parse::Invalid(Reject::NotTls));
        assert_eq!(parse(&[0x16, 2]), Parse::Invalid(Reject::BadRecord));
        assert_eq!(
            parse(&[0x16, 3, 1, 0, 0]),
            Parse::Invalid(Reject::BadRecord)
        );
        assert_eq!(
            parse(&[0x16, 3, 1, 0x48, 1]),
            Parse::Invalid(Reject::BadRecord)
        );
    }

    #[test]
    fn rejects_sslv2() {
        assert_eq!(
            parse(&[0x80, 0x2e, 0x01, 0x03, 0x01]),
            Parse::Invalid(Reject::SslV2)
        );
    }

    #[test]
    fn rejects_other_handshake_types_and_oversize() {
        assert_eq!(
            parse(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]),
            Parse::Invalid(Reject::NotClientHello)
        );
        assert_eq!(
            parse(&[0x16, 3, 1, 0, 4, 1, 0, 0x40, 1]),
            Parse::Invalid(Reject::TooLarge)
        );
    }

    #[test]
    fn largest_hello_across_records_is_accepted() {
        let pad = vec![0u8; MAX_HELLO_LEN - 200];
        let body = hello_body(&[sni_ext(b"big.test"), (21, pad)]);
        assert!(body.len() <= MAX_HELLO_LEN);
        let input = records(&handshake(&body), 4000);
        assert_eq!(sni_of(&input).as_deref(), Some("big.test"));
    }

    #[test]
    fn too_many_tiny_records_are_refused() {
        let pad = vec![0u8; 4000];
        let body = hello_body(&[sni_ext(b"big.test"), (21, pad)]);
        let input = records(&handshake(&body), 1);
        assert_eq!(parse(&input), Parse::Invalid(Reject::TooLarge));
    }

    #[test]
    fn rejects_bad_and_ip_sni() {
        for name in [&b"1.2.3.4"[..], b"::1", b"[::1]", b"10.0.0.1."] {
            let input = records(&handshake(&hello_body(&[sni_ext(name)])), 16384);
            assert_eq!(
                parse(&input),
                Parse::Invalid(Reject::IpLiteralSni),
                "{name:?}"
            );
        }
        for name in [
            &b""[..],
            b"a..b",
            b"-a.test",
            b"a b.test",
            b"\xff.test",
            b".",
        ] {
            let input = records(&handshake(&hello_body(&[sni_ext(name)])), 16384);
            assert_eq!(parse(&input), Parse::Invalid(Reject::BadSni), "{name:?}");
        }
        let long = vec![b'a'; 64];
        let input = records(&handshake(&hello_body(&[sni_ext(&long)])), 16384);
        assert_eq!(parse(&input), Parse::Invalid(Reject::BadSni));
    }

    #[test]
    fn rejects_duplicate_sni_extension() {
        let e = sni_ext(b"a.test");
        let input = records(&handshake(&hello_body(&[e.clone(), e])), 16384);
        assert_eq!(parse(&input), Parse::Invalid(Reject::BadSni));
    }

    #[test]
    fn rejects_truncated_extension_block() {
        let mut body = hello_body(&[sni_ext(b"a.test")]);
        body.pop();
        let input = records(&handshake(&body), 16384);
        assert_eq!(parse(&input), Parse::Invalid(Reject::Malformed));
    }

    #[test]
    fn trailing_dot_is_kept_for_the_matcher() {
        let input = records(&handshake(&hello_body(&[sni_ext(b"A.Test.")])), 16384);
        assert_eq!(sni_of(&input).as_deref(), Some("A.Test."));
    }

    /// Real hellos captured from clients (see tests/fixtures/clienthello/README.md).
    const FIXTURES: [(&str, &[u8], &str); 8] = [
        (
            "openssl",
            include_bytes!("../../../tests/fixtures/clienthello/openssl.bin"),
            "openssl.capture.test",
        ),
        (
            "curl",
            include_bytes!("../../../tests/fixtures/clienthello/curl.bin"),
            "curl.capture.test",
        ),
        (
            "kcat",
            include_bytes!("../../../tests/fixtures/clienthello/kcat.bin"),
            "kafka.capture.test",
        ),
        (
            "java",
            include_bytes!("../../../tests/fixtures/clienthello/java.bin"),
            "java.capture.test",
        ),
        (
            "python",
            include_bytes!("../../../tests/fixtures/clienthello/python.bin"),
            "python.capture.test",
        ),
        (
            "pq",
            include_bytes!("../../../tests/fixtures/clienthello/pq-x25519mlkem768.bin"),
            "pq.capture.test",
        ),
        (
            "openssl-two-records",
            include_bytes!("../../../tests/fixtures/clienthello/openssl-two-records.bin"),
            "openssl.capture.test",
        ),
        (
            "pq-many-records",
            include_bytes!("../../../tests/fixtures/clienthello/pq-many-records.bin"),
            "pq.capture.test",
        ),
    ];

    #[test]
    fn real_hellos_parse_with_their_sni() {
        for (who, bytes, sni) in FIXTURES {
            match parse(bytes) {
                Parse::Complete(h) => {
                    assert_eq!(h.sni.as_deref(), Some(sni), "{who}");
                    assert_eq!(h.record_bytes, bytes.len(), "{who}");
                }
                other => panic!("{who}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_strict_prefix_of_a_real_hello_is_incomplete() {
        for (who, bytes, _) in FIXTURES {
            for n in 0..bytes.len() {
                assert_eq!(parse(&bytes[..n]), Parse::Incomplete, "{who} prefix {n}");
            }
        }
    }

    #[test]
    fn post_quantum_hello_is_larger_than_a_segment() {
        let (_, pq, _) = FIXTURES[5];
        assert!(pq.len() > 1460, "an Ethernet MSS is 1460 bytes");
        match parse(pq) {
            Parse::Complete(h) => assert!(h.hello_len > 1400),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alpn_of_curl_is_reported() {
        match parse(FIXTURES[1].1) {
            Parse::Complete(h) => assert!(h.alpn.iter().any(|p| p == "http/1.1"), "{:?}", h.alpn),
            other => panic!("{other:?}"),
        }
    }
}
