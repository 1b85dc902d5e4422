//! Real ClientHellos, captured from `openssl s_client` once per name, and where a hello
//! ends in a byte stream.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Reads one complete ClientHello (all its TLS records) from `r`, a record at a time.
pub fn read_hello(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 5];
        r.read_exact(&mut header)?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let at = out.len();
        out.extend_from_slice(&header);
        out.resize(at + 5 + len, 0);
        r.read_exact(&mut out[at + 5..])?;
        if hello_len(&out).is_some() {
            return Ok(out);
        }
    }
}

/// How many bytes of `buf` the hello at its start takes, once they are all there.
pub fn hello_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    let mut got = 0;
    let mut need = None;
    while pos + 5 <= buf.len() {
        let len = usize::from(u16::from_be_bytes([buf[pos + 3], buf[pos + 4]]));
        let end = pos + 5 + len;
        if end > buf.len() {
            return None;
        }
        let payload = &buf[pos + 5..end];
        if need.is_none() && payload.len() >= 4 {
            need = Some(
                4 + ((usize::from(payload[1]) << 16)
                    | (usize::from(payload[2]) << 8)
                    | usize::from(payload[3])),
            );
        }
        got += len;
        pos = end;
        if need.is_some_and(|n| got >= n) {
            return Some(pos);
        }
    }
    None
}

/// Captures the hello `openssl s_client` sends for each name into `dir/NAME.bin`.
pub fn capture(names: &[String], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for name in names {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let mut client = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                name,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let hello = read_hello(&mut conn)?;
        drop(conn);
        if let Some(mut stdin) = client.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = client.kill();
        let _ = client.wait();
        std::fs::write(dir.join(format!("{name}.bin")), &hello)?;
    }
    Ok(())
}

/// The captured hellos in `dir`, by name, in name order.
pub fn load(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let (Some(stem), Some("bin")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|e| e.to_str()),
        ) {
            out.push((stem.to_owned(), std::fs::read(&path)?));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(format!("no hellos in {}", dir.display()).into());
    }
    Ok(out)
}
