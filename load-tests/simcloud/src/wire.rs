//! The few Kafka wire formats the front speaks itself: request headers, ApiVersions,
//! SaslHandshake and SaslAuthenticate. Everything else is relayed untouched.

/// API keys the front handles.
pub const API_VERSIONS: i16 = 18;
/// SaslHandshake.
pub const SASL_HANDSHAKE: i16 = 17;
/// SaslAuthenticate.
pub const SASL_AUTHENTICATE: i16 = 36;

/// Kafka error codes used here.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// ApiVersions request version not supported.
pub const UNSUPPORTED_VERSION: i16 = 35;
/// Bad credentials.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// The fixed part of a request header.
#[derive(Debug, Clone, Copy)]
pub struct RequestHeader {
    /// API key.
    pub api_key: i16,
    /// API version.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
}

/// A bounds-checked reader.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    /// i16.
    pub fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    /// i32.
    pub fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Nullable string with an i16 length.
    pub fn nullable_string(&mut self) -> Option<Option<&'a [u8]>> {
        let n = self.i16()?;
        if n < 0 {
            return Some(None);
        }
        self.take(n as usize).map(Some)
    }
    /// Bytes with an i32 length.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.i32()?;
        if n < 0 {
            return None;
        }
        self.take(n as usize)
    }
}

/// Parses a request: header v1 (non-flexible) up to the body. Flexible (v2) headers are
/// only read for their fixed part, which is all ApiVersions needs.
pub fn parse_request(frame: &[u8]) -> Option<(RequestHeader, &[u8])> {
    let mut r = Reader::new(frame);
    let header = RequestHeader {
        api_key: r.i16()?,
        api_version: r.i16()?,
        correlation_id: r.i32()?,
    };
    let _client_id = r.nullable_string()?;
    Some((header, r.buf))
}

/// One entry of an ApiVersions response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// API key.
    pub key: i16,
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

/// Builds an ApiVersions v0 request (used to ask the broker what it supports).
pub fn api_versions_request_v0(correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&API_VERSIONS.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    let client = b"simcloud";
    body.extend_from_slice(&(client.len() as i16).to_be_bytes());
    body.extend_from_slice(client);
    frame(body)
}

/// Parses an ApiVersions v0 response body (after the correlation id).
pub fn parse_api_versions_v0(body: &[u8]) -> Option<Vec<ApiRange>> {
    let mut r = Reader::new(body);
    let err = r.i16()?;
    if err != 0 {
        return None;
    }
    let n = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(ApiRange {
            key: r.i16()?,
            min: r.i16()?,
            max: r.i16()?,
        });
    }
    Some(out)
}

/// Builds a Metadata v0 request for all topics.
pub fn metadata_request_v0(correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&3i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
    body.extend_from_slice(&0i32.to_be_bytes()); // topics: none listed
    frame(body)
}

/// Reads the broker list (id, host, port) from a Metadata v0 response body.
pub fn parse_metadata_brokers_v0(body: &[u8]) -> Option<Vec<(i32, String, i32)>> {
    let mut r = Reader::new(body);
    let n = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let id = r.i32()?;
        let host = String::from_utf8_lossy(r.nullable_string()??).into_owned();
        let port = r.i32()?;
        out.push((id, host, port));
    }
    Some(out)
}

/// Adds a length prefix.
pub fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encodes an ApiVersions response of `version` (0..=3); response header v0.
pub fn api_versions_response(
    correlation_id: i32,
    version: i16,
    error: i16,
    apis: &[ApiRange],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&correlation_id.to_be_bytes());
    b.extend_from_slice(&error.to_be_bytes());
    if version >= 3 {
        uvarint(&mut b, apis.len() as u32 + 1);
    } else {
        b.extend_from_slice(&(apis.len() as i32).to_be_bytes());
    }
    for a in apis {
        b.extend_from_slice(&a.key.to_be_bytes());
        b.extend_from_slice(&a.min.to_be_bytes());
        b.extend_from_slice(&a.max.to_be_bytes());
        if version >= 3 {
            uvarint(&mut b, 0);
        }
    }
    if version >= 1 {
        b.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    }
    if version >= 3 {
        uvarint(&mut b, 0);
    }
    frame(b)
}

/// Encodes a SaslHandshake response (v0/v1).
pub fn sasl_handshake_response(correlation_id: i32, error: i16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&correlation_id.to_be_bytes());
    b.extend_from_slice(&error.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&5i16.to_be_bytes());
    b.extend_from_slice(b"PLAIN");
    frame(b)
}

/// Encodes a SaslAuthenticate response (v0/v1).
pub fn sasl_authenticate_response(
    correlation_id: i32,
    version: i16,
    error: i16,
    message: Option<&str>,
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&correlation_id.to_be_bytes());
    b.extend_from_slice(&error.to_be_bytes());
    match message {
        Some(m) => {
            b.extend_from_slice(&(m.len() as i16).to_be_bytes());
            b.extend_from_slice(m.as_bytes());
        }
        None => b.extend_from_slice(&(-1i16).to_be_bytes()),
    }
    b.extend_from_slice(&0i32.to_be_bytes()); // auth_bytes: empty
    if version >= 1 {
        b.extend_from_slice(&0i64.to_be_bytes()); // session_lifetime_ms
    }
    frame(b)
}

/// Checks a SASL/PLAIN token `[authzid] NUL user NUL password`.
pub fn plain_matches(token: &[u8], user: &str, password: &str) -> bool {
    let mut parts = token.split(|&b| b == 0);
    let (Some(_authzid), Some(u), Some(p), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    u == user.as_bytes() && p == password.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tokens() {
        assert!(plain_matches(b"\0key\0secret", "key", "secret"));
        assert!(plain_matches(b"key\0key\0secret", "key", "secret"));
        assert!(!plain_matches(b"\0key\0wrong", "key", "secret"));
        assert!(!plain_matches(b"\0key", "key", "secret"));
    }

    #[test]
    fn api_versions_roundtrip_v0() {
        let apis = [ApiRange {
            key: 0,
            min: 0,
            max: 9,
        }];
        let resp = api_versions_response(7, 0, 0, &apis);
        assert_eq!(&resp[4..8], &7i32.to_be_bytes());
        assert_eq!(parse_api_versions_v0(&resp[8..]).unwrap(), apis);
    }
}
