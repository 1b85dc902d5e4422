//! Feeds arbitrary bytes to the PROXY protocol parser, which reads whatever connects to an
//! `accept_proxy` listener.
//!
//! Besides "never panics", it checks the parser's contract:
//! - a complete header fits in the input, and parsing exactly its bytes gives the same
//!   header (it never reads past its end);
//! - every strict prefix of a complete header is `Incomplete`, never `Invalid` (the
//!   listener waits for more bytes rather than refusing a good client);
//! - `Incomplete` is bounded: no input of `V2_MAX` bytes or more is still incomplete, so a
//!   client cannot keep the listener waiting with an endless header;
//! - a header that names TCP addresses is written back by `header` into one that parses to
//!   the same addresses, in both versions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snigate_core::proxy_protocol::{header, parse, Parse, Version, V2_MAX};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Parse::Incomplete => assert!(
            data.len() < V2_MAX,
            "{} bytes and still incomplete",
            data.len()
        ),
        Parse::Invalid => {}
        Parse::Complete(h) => {
            assert!(h.len > 0 && h.len <= data.len(), "{h:?} in {} bytes", data.len());
            assert_eq!(parse(&data[..h.len]), Parse::Complete(h));
            for k in 0..h.len {
                assert_eq!(
                    parse(&data[..k]),
                    Parse::Incomplete,
                    "the {k}-byte prefix of a complete {}-byte header",
                    h.len
                );
            }
            if let Some((client, local)) = h.addresses {
                for version in [Version::V1, Version::V2] {
                    let again = header(version, client, local);
                    match parse(&again) {
                        Parse::Complete(back) => {
                            assert_eq!(back.len, again.len(), "{version:?}");
                            assert_eq!(back.addresses, Some((client, local)), "{version:?}");
                        }
                        other => panic!("{version:?} header {again:?} parses as {other:?}"),
                    }
                }
            }
        }
    }
});
