//! The HTTPS endpoints: Kafka REST (`pkac-…`) and Schema Registry (`psrc-…`), with basic auth.

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Which service an endpoint plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kafka REST: every path here answers the REST API's JSON 404.
    Rest,
    /// Schema Registry: `GET /subjects` lists subjects.
    SchemaRegistry,
}

/// The JSON 404 body the real endpoints give.
pub const NOT_FOUND: &str = r#"{"error_code":404,"message":"HTTP 404 Not Found"}"#;
const UNAUTHORIZED: &str = r#"{"error_code":401,"message":"Unauthorized"}"#;

/// Base64 (standard alphabet, padded).
pub fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Serves one endpoint forever.
pub async fn serve(listener: TcpListener, tls: TlsAcceptor, kind: Kind, basic: Arc<String>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let tls = tls.clone();
        let basic = basic.clone();
        tokio::spawn(async move {
            let Ok(mut s) = tls.accept(tcp).await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let mut lines = head.lines();
            let mut req = lines.next().unwrap_or("").split(' ');
            let (method, path) = (req.next().unwrap_or(""), req.next().unwrap_or(""));
            let auth_ok = lines.any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("authorization") && v.trim() == format!("Basic {basic}")
                })
            });
            let (status, body) = if !auth_ok {
                ("401 Unauthorized", UNAUTHORIZED.to_owned())
            } else if kind == Kind::SchemaRegistry && method == "GET" && path == "/subjects" {
                ("200 OK", r#"["demo-value","orders-value"]"#.to_owned())
            } else {
                ("404 Not Found", NOT_FOUND.to_owned())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b"key:secret"), "a2V5OnNlY3JldA==");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"abc"), "YWJj");
    }
}
