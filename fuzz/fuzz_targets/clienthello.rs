//! Feeds arbitrary bytes to the ClientHello parser.
//!
//! Besides "never panics", it checks the parser's contract on every complete hello:
//! - the hello fits in the input: `record_bytes <= data.len()`;
//! - the sizes agree: the records hold at least the handshake header and body;
//! - a few shorter prefixes are never `Complete` with another SNI, and never `Invalid`
//!   (a check may only fail on bytes that are present, so a prefix of a good hello must
//!   not be refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use snigate_core::clienthello::{parse, Parse, MAX_HELLO_LEN};

/// Inputs longer than this skip the prefix checks, to keep each run cheap.
const PREFIX_CHECK_MAX_INPUT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Parse::Complete(hello) = parse(data) else {
        return;
    };
    let end = hello.record_bytes;
    assert!(
        end <= data.len(),
        "record_bytes {end} is past the end of a {}-byte input",
        data.len()
    );
    assert!(
        hello.hello_len <= MAX_HELLO_LEN,
        "hello_len {} too large",
        hello.hello_len
    );
    assert!(
        end >= 5 + 4 + hello.hello_len,
        "record_bytes {end} cannot hold a {}-byte hello",
        hello.hello_len
    );

    if data.len() > PREFIX_CHECK_MAX_INPUT {
        return;
    }
    // The record header, the handshake header, and a few points through the body.
    let cuts = [1, 5, 6, 9, end / 4, end / 2, end - end / 4, end - 1];
    for cut in cuts {
        if cut == 0 || cut >= end {
            continue;
        }
        match parse(&data[..cut]) {
            Parse::Incomplete => {}
            Parse::Complete(short) => assert_eq!(
                short.sni, hello.sni,
                "prefix of {cut} bytes completes with another SNI"
            ),
            Parse::Invalid(reason) => {
                panic!(
                    "prefix of {cut} bytes is refused ({reason}) but the whole hello is complete"
                )
            }
        }
    }
});
