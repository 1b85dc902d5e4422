//! Plays arbitrary bytes as an egress proxy's answer to the gateway's tunnel request, through
//! `snigate::upstream::egress::handshake`: the same code the data path and discovery use,
//! with HTTP CONNECT (the answer read with httparse) and SOCKS5 (tokio-socks: the method
//! choice, the RFC 1929 status and the RFC 1928 reply).
//!
//! The first input byte picks the protocol and whether credentials are sent, the second
//! how many bytes each read returns; the rest is the proxy's answer. The stream never
//! blocks, so the handshake must finish in a single poll. Besides "never panics", it
//! checks that:
//! - an open HTTP tunnel had a complete 2xx head, and the bytes after the head are handed
//!   on as the upstream's, byte for byte;
//! - a refused HTTP tunnel carries the status the head really had;
//! - the request named the upstream by name (CONNECT `name:port`, SOCKS5 address type 3),
//!   and nothing read more than the answer's bytes;
//! - no error shows the proxy's password or user unless the answer itself held them.
#![no_main]

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use snigate::upstream::egress::{handshake, ProxyError};
use snigate_core::egress::{connect_reply, ConnectReply, EgressProxy};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const HOST: &str = "b0-pkc-fuzz.eu.example.test";
const PORT: u16 = 9092;
const USER: &str = "fuzz-user-7Qx";
const PASSWORD: &str = "fuzz-pass-Zr9Kt2";

/// The proxy's side: hands out `answer` in reads of at most `chunk` bytes, then EOF, and
/// keeps what the gateway writes.
struct Proxy<'a> {
    answer: &'a [u8],
    read: usize,
    chunk: usize,
    written: Vec<u8>,
}

impl AsyncRead for Proxy<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = &self.answer[self.read..];
        let n = left.len().min(self.chunk).min(buf.remaining());
        buf.put_slice(&left[..n]);
        self.read += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Proxy<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fuzz_target!(|data: &[u8]| {
    let [mode, chunk, answer @ ..] = data else {
        return;
    };
    let scheme = if mode & 1 == 0 { "http" } else { "socks5" };
    let url = if mode & 2 == 0 {
        format!("{scheme}://proxy.corp.test:3128")
    } else {
        format!("{scheme}://{USER}:{PASSWORD}@proxy.corp.test:3128")
    };
    let proxy = EgressProxy::parse(&url).expect("a valid proxy URL");
    let mut stream = Proxy {
        answer,
        read: 0,
        chunk: usize::from(*chunk).max(1),
        written: Vec::new(),
    };
    let result = {
        let mut done = pin!(handshake(&proxy, &mut stream, HOST, PORT));
        match done.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r.map(|(_, early)| early),
            Poll::Pending => panic!("the handshake waits on a stream that never blocks"),
        }
    };
    assert!(stream.read <= answer.len());
    let asked = &stream.written;
    match (scheme, &result) {
        ("http", _) => {
            let line = format!("CONNECT {HOST}:{PORT} HTTP/1.1\r\n");
            assert!(asked.starts_with(line.as_bytes()), "{asked:?}");
        }
        (_, Ok(_)) => {
            // Greeting, optional RFC 1929 exchange, then VER CMD RSV ATYP=3 LEN NAME PORT.
            let mut request = vec![5, 1, 0, 3, HOST.len() as u8];
            request.extend_from_slice(HOST.as_bytes());
            request.extend_from_slice(&PORT.to_be_bytes());
            assert!(asked.ends_with(&request), "{asked:?}");
        }
        _ => {}
    }
    match result {
        Ok(early) if scheme == "http" => {
            let head = stream.read - early.len();
            assert_eq!(
                connect_reply(&answer[..head]),
                Ok(ConnectReply::Open(head)),
                "opened on {:?}",
                &answer[..head]
            );
            assert_eq!(early, &answer[head..stream.read]);
        }
        Ok(early) => assert!(early.is_empty()),
        Err(e) => {
            if let ProxyError::Http { code, .. } = &e {
                match connect_reply(&answer[..stream.read]) {
                    Ok(ConnectReply::Refused(c, _)) => assert_eq!(c, *code),
                    other => panic!("refused with {code} on an answer that reads {other:?}"),
                }
            }
            let shown = format!("{e} {e:?} {}", e.reply());
            for secret in [USER, PASSWORD] {
                assert!(
                    !contains(shown.as_bytes(), secret) || contains(answer, secret),
                    "{shown}"
                );
            }
        }
    }
});
