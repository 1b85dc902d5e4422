//! The upstream servers behind the proxies. Each connection's first bytes are a ClientHello
//! (passed through untouched, as a real TLS server would get it), then one byte that says
//! what the upstream does with it.

use crate::hello::hello_len;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answer with [`REPLY_LEN`] bytes, then wait for the client to close.
pub const REPLY: u8 = b'R';
/// Read and discard until EOF, then answer with the byte count (8 bytes, little-endian).
pub const SINK: u8 = b'S';
/// Send bytes as fast as possible until the client goes away.
pub const SOURCE: u8 = b'D';
/// Answer with one byte, then wait for the client to close.
pub const IDLE: u8 = b'I';
/// Size of a [`REPLY`].
pub const REPLY_LEN: usize = 64;

/// Listens on every address and serves until killed.
pub async fn serve(addrs: Vec<SocketAddr>) -> std::io::Result<()> {
    let mut loops = Vec::new();
    for addr in addrs {
        let std = std::net::TcpListener::bind(addr)?;
        // SAFETY: listen(2) again on a listening socket only raises its backlog.
        unsafe {
            libc::listen(std::os::fd::AsRawFd::as_raw_fd(&std), 65535);
        }
        std.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std)?;
        loops.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(async move {
                            let _ = connection(s).await;
                        });
                    }
                    Err(e) => {
                        eprintln!("upstream {addr}: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    println!("upstreams ready");
    for l in loops {
        let _ = l.await;
    }
    Ok(())
}

async fn connection(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    let command = loop {
        let n = s.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        if let Some(end) = hello_len(&buf[..have]) {
            if have > end {
                break buf[end];
            }
        }
        if have == buf.len() {
            return Ok(());
        }
    };
    match command {
        REPLY => {
            s.write_all(&[b'r'; REPLY_LEN]).await?;
            while s.read(&mut buf).await? > 0 {}
        }
        IDLE => {
            s.write_all(b"k").await?;
            while s.read(&mut buf).await? > 0 {}
        }
        SINK => {
            let mut big = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = s.read(&mut big).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            s.write_all(&total.to_le_bytes()).await?;
            s.shutdown().await?;
        }
        SOURCE => {
            let chunk = vec![0x5au8; 256 * 1024];
            while s.write_all(&chunk).await.is_ok() {}
        }
        _ => {}
    }
    Ok(())
}
