//! The `tls` health check's bytes: a ClientHello carrying a route's SNI, and the reading
//! of what the server sends back. The check never completes a handshake: a ServerHello
//! (or a HelloRetryRequest, which is one too) proves that the server's TLS answers.

/// Builds a ClientHello record for `sni` offering TLS 1.3 and 1.2. `seed` fills the random
/// and the X25519 key share; it needs no secrecy, as no handshake is ever finished.
pub fn client_hello(sni: &str, seed: [u8; 32]) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    let name = sni.as_bytes();
    let mut exts = Vec::with_capacity(160 + name.len());
    // server_name: list length, type 0 (host_name), name length, name.
    let mut sn = Vec::with_capacity(5 + name.len());
    sn.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sn.push(0);
    sn.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sn.extend_from_slice(name);
    ext(&mut exts, 0x0000, &sn);
    // supported_groups: x25519, secp256r1, secp384r1.
    ext(
        &mut exts,
        0x000a,
        &[0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18],
    );
    // ec_point_formats: uncompressed.
    ext(&mut exts, 0x000b, &[1, 0]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256,
    // ecdsa_secp384r1_sha384, rsa_pss_rsae_sha384, rsa_pkcs1_sha384, rsa_pss_rsae_sha512,
    // rsa_pkcs1_sha512, ed25519.
    ext(
        &mut exts,
        0x000d,
        &[
            0, 18, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08,
            0x06, 0x06, 0x01, 0x08, 0x07,
        ],
    );
    // supported_versions: TLS 1.3, TLS 1.2.
    ext(&mut exts, 0x002b, &[4, 0x03, 0x04, 0x03, 0x03]);
    // psk_key_exchange_modes: psk_dhe_ke (some servers want it beside a key share).
    ext(&mut exts, 0x002d, &[1, 1]);
    // key_share: one X25519 share.
    let mut ks = Vec::with_capacity(38);
    ks.extend_from_slice(&36u16.to_be_bytes());
    ks.extend_from_slice(&[0x00, 0x1d, 0, 32]);
    ks.extend_from_slice(&seed);
    ext(&mut exts, 0x0033, &ks);

    let mut body = Vec::with_capacity(80 + exts.len());
    body.extend_from_slice(&[0x03, 0x03]);
    let mut random = seed;
    random.reverse();
    body.extend_from_slice(&random);
    body.push(0); // no session id
    let suites: [u16; 8] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9,
    ];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);

    let mut out = Vec::with_capacity(9 + body.len());
    out.extend_from_slice(&[0x16, 0x03, 0x01]);
    out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    out.push(1); // client_hello
    let len = body.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&body);
    out
}

/// What the first bytes a server sent back say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not enough bytes yet.
    Incomplete,
    /// A ServerHello: TLS answers.
    ServerHello,
    /// A TLS alert, with its description code.
    Alert(u8),
    /// Something that is not a TLS handshake answer.
    NotTls,
}

/// Reads the start of a server's answer to [`client_hello`].
pub fn answer(buf: &[u8]) -> Answer {
    if buf.len() < 6 {
        return if buf.first().is_some_and(|b| *b != 0x16 && *b != 0x15) {
            Answer::NotTls
        } else {
            Answer::Incomplete
        };
    }
    match (buf[0], buf[1]) {
        (0x16, 0x03) if buf[5] == 2 => Answer::ServerHello,
        (0x15, 0x03) if buf.len() >= 7 => Answer::Alert(buf[6]),
        (0x15, 0x03) => Answer::Incomplete,
        _ => Answer::NotTls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clienthello::{parse, Parse};

    #[test]
    fn the_hello_carries_the_name_and_parses() {
        let hello = client_hello("pkc-1.example.test", [7; 32]);
        match parse(&hello) {
            Parse::Complete(h) => {
                assert_eq!(h.sni.as_deref(), Some("pkc-1.example.test"));
                assert_eq!(h.hello_len + 9, hello.len(), "one record holds it all");
            }
            other => panic!("not a complete hello: {other:?}"),
        }
    }

    #[test]
    fn answers_are_told_apart() {
        assert_eq!(answer(&[0x16, 0x03]), Answer::Incomplete);
        assert_eq!(answer(&[0x16, 0x03, 0x03, 0, 90, 2]), Answer::ServerHello);
        assert_eq!(
            answer(&[0x15, 0x03, 0x03, 0, 2, 2, 112]),
            Answer::Alert(112)
        );
        assert_eq!(answer(b"HTTP/1.1 400"), Answer::NotTls);
        assert_eq!(answer(b"H"), Answer::NotTls);
    }
}
