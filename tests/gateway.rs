//! Process-level tests: the built snigate binary between real TLS clients and real TLS
//! upstreams, each on its own 127.x address. A routed connection counts as right only when
//! the client verified the certificate of the upstream it asked for.

mod common;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const KAFKA: u16 = 9092;
const HTTPS: u16 = 443;
const ADMIN: u16 = 9080;

/// A gateway on host 1 with listeners `kafka` (9092) and `https` (443), and `extra` YAML
/// appended to the `gateway:` section.
fn gateway_yaml(net: &Net, routes: &str, extra: &str) -> String {
    format!(
        "gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:{KAFKA}\n    - name: https\n      address: {gw}:{HTTPS}\n  routes:\n{routes}  admin:\n    address: {gw}:{ADMIN}\n{extra}",
        gw = net.ip(1)
    )
}

fn route(sni: &str, upstream: &str) -> String {
    format!("    - sni: \"{sni}\"\n      upstream: \"{upstream}\"\n")
}

/// A gateway routing `sni` to a raw upstream on host 2 that runs `handler`; `extra` is
/// appended to the `gateway:` section.
fn raw_gateway<F>(
    tag: &str,
    sni: &str,
    extra: &str,
    handler: F,
) -> (Net, Scratch, RawUpstream, Snigate)
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let net = Net::new();
    let scratch = Scratch::new(tag);
    let up = RawUpstream::start(net.addr(2, KAFKA), handler);
    let routes = route(sni, &format!("{}:{KAFKA}", net.ip(2)));
    let gw = Snigate::start(
        &scratch.dir,
        &gateway_yaml(&net, &routes, extra),
        net.addr(1, ADMIN),
    );
    (net, scratch, up, gw)
}

/// Three TLS upstreams, each with its own certificate, routed by exact name, by wildcard
/// and by `{sni}:{port}` pinned to an address; checked with s_client and curl.
#[test]
fn routes_each_name_to_its_own_upstream() {
    let net = Net::new();
    let scratch = Scratch::new("routes");
    let pki = Pki::new(&scratch.dir);
    let _a = tls_upstream(&pki, "pkc-a.example.test", net.addr(2, KAFKA));
    let _b = tls_upstream(&pki, "b0-pkc-a.example.test", net.addr(3, KAFKA));
    let _w = tls_upstream(&pki, "psrc-1.w.example.test", net.addr(4, HTTPS));
    let routes = [
        route("pkc-a.example.test", &format!("{}:{KAFKA}", net.ip(2))),
        route("*.example.test", &format!("{}:{KAFKA}", net.ip(3))),
        format!(
            "{}      addresses: [\"{}\"]\n",
            route("*.w.example.test", "{sni}:{port}"),
            net.ip(4)
        ),
    ]
    .concat();
    let gw = Snigate::start(
        &scratch.dir,
        &gateway_yaml(&net, &routes, ""),
        net.addr(1, ADMIN),
    );

    let kafka = net.addr(1, KAFKA);
    for (sni, want) in [
        ("pkc-a.example.test", "pkc-a.example.test"),
        ("b0-pkc-a.example.test", "b0-pkc-a.example.test"),
    ] {
        let out = s_client(kafka, Some(sni), &pki.ca());
        assert_eq!(peer_cn(&out).as_deref(), Some(want), "{out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    }
    // A wildcard route sends an unlisted broker name to the wildcard's upstream, whose
    // certificate does not match: the client must refuse it.
    let out = s_client(kafka, Some("b9-pkc-a.example.test"), &pki.ca());
    assert_eq!(
        peer_cn(&out).as_deref(),
        Some("b0-pkc-a.example.test"),
        "{out}"
    );
    assert!(!out.contains("Verify return code: 0 (ok)"), "{out}");

    // curl on 443: `{sni}:{port}` pinned to host 4, port taken from the listener.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(pki.ca())
        .args([
            "--connect-to",
            &format!("psrc-1.w.example.test:443:{}:{HTTPS}", net.ip(1)),
            "https://psrc-1.w.example.test/",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    gw.wait_metric(
        "snigate_connections_total",
        &[("route", "pkc-a.example.test"), ("outcome", "ok")],
        1.0,
    );
    gw.wait_metric(
        "snigate_connections_total",
        &[("route", "*.example.test"), ("outcome", "ok")],
        2.0,
    );
    gw.wait_metric(
        "snigate_connections_total",
        &[
            ("listener", "https"),
            ("route", "*.w.example.test"),
            ("outcome", "ok"),
        ],
        1.0,
    );
    let log = gw.log_text();
    assert!(
        log.contains("listener=https sni=psrc-1.w.example.test alpn=h2,http/1.1 route=*.w.example.test upstream=psrc-1.w.example.test:443"),
        "{log}"
    );
}

/// Unknown SNI, no SNI, plain HTTP and garbage are all closed, and the upstream sees none.
#[test]
fn refuses_what_it_cannot_route() {
    let net = Net::new();
    let scratch = Scratch::new("refuse");
    let pki = Pki::new(&scratch.dir);
    let upstream = RawUpstream::start(net.addr(2, KAFKA), echo);
    let routes = route("known.example.test", &format!("{}:{KAFKA}", net.ip(2)));
    let gw = Snigate::start(
        &scratch.dir,
        &gateway_yaml(&net, &routes, ""),
        net.addr(1, ADMIN),
    );
    let kafka = net.addr(1, KAFKA);

    let out = s_client(kafka, Some("unknown.example.test"), &pki.ca());
    assert!(out.contains("unrecognized name"), "{out}");
    assert_eq!(peer_cn(&out), None, "{out}");
    let out = s_client(kafka, None, &pki.ca());
    assert!(out.contains("unrecognized name"), "{out}");

    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", &format!("http://{kafka}/")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "plain HTTP got an answer");

    let mut s = TcpStream::connect(kafka).unwrap();
    s.write_all(b"\x00\x01\x02 definitely not TLS \xff\xfe")
        .unwrap();
    assert_closed(&mut s);

    gw.wait_metric("snigate_connections_total", &[("outcome", "no_route")], 1.0);
    gw.wait_metric("snigate_connections_total", &[("outcome", "no_sni")], 1.0);
    gw.wait_metric(
        "snigate_clienthello_rejects_total",
        &[("reason", "not_tls")],
        2.0,
    );
    assert_eq!(
        upstream.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(gw
        .log_text()
        .contains("no route matches SNI unknown.example.test"));
}

/// With a fallback, clients without SNI or with an unknown one reach the fallback.
#[test]
fn fallback_takes_unmatched_and_sni_less_clients() {
    let net = Net::new();
    let scratch = Scratch::new("fallback");
    let pki = Pki::new(&scratch.dir);
    let _d = tls_upstream(&pki, "default.example.test", net.addr(2, KAFKA));
    let yaml = format!(
        "gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:{KAFKA}\n      fallback: {up}:{KAFKA}\n  admin:\n    address: {gw}:{ADMIN}\n",
        gw = net.ip(1),
        up = net.ip(2)
    );
    let gw = Snigate::start(&scratch.dir, &yaml, net.addr(1, ADMIN));
    let out = s_client(net.addr(1, KAFKA), None, &pki.ca());
    assert_eq!(
        peer_cn(&out).as_deref(),
        Some("default.example.test"),
        "{out}"
    );
    let out = s_client(net.addr(1, KAFKA), Some("default.example.test"), &pki.ca());
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    gw.wait_metric(
        "snigate_connections_total",
        &[("route", "fallback"), ("outcome", "ok")],
        2.0,
    );
}

fn assert_closed(s: &mut TcpStream) {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // e.g. a TLS alert before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connection was not closed: {e}"),
        }
    }
}

/// A rustls client whose first flight (the ClientHello) is reshaped before it is sent.
fn rustls_handshake(
    gw: SocketAddr,
    sni: &str,
    ca: &std::path::Path,
    reshape: fn(&[u8], &mut TcpStream),
) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    let mut sock = TcpStream::connect(gw).unwrap();
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    reshape(&hello, &mut sock);
    // The hello is out; finish the handshake. rustls verifies the chain and the name.
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .expect("handshake through the gateway");
    }
    let cert = conn.peer_certificates().unwrap()[0].to_vec();
    // One request through the tunnel; `s_server -www` answers and closes.
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut page = Vec::new();
    match tls.read_to_end(&mut page) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    assert!(
        page.starts_with(b"HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&page)
    );
    cert
}

/// Routes a rustls handshake for `name` whose ClientHello is sent by `reshape`, and checks
/// that the upstream with `name`'s certificate answered.
fn routed_with_reshaped_hello(tag: &str, name: &str, reshape: fn(&[u8], &mut TcpStream)) {
    let net = Net::new();
    let scratch = Scratch::new(tag);
    let pki = Pki::new(&scratch.dir);
    let _a = tls_upstream(&pki, name, net.addr(2, KAFKA));
    let routes = route(name, &format!("{}:{KAFKA}", net.ip(2)));
    let gw = Snigate::start(
        &scratch.dir,
        &gateway_yaml(&net, &routes, ""),
        net.addr(1, ADMIN),
    );
    let cert = rustls_handshake(net.addr(1, KAFKA), name, &pki.ca(), reshape);
    assert!(contains(&cert, name.as_bytes()));
    gw.wait_metric(
        "snigate_connections_total",
        &[("route", name), ("outcome", "ok")],
        1.0,
    );
}

/// The ClientHello sent one byte per TCP segment still routes to the right upstream.
#[test]
fn hello_sent_byte_by_byte_is_routed() {
    routed_with_reshaped_hello("trickle", "slow.example.test", |hello, sock| {
        for b in hello {
            sock.write_all(&[*b]).unwrap();
            // Pace the bytes so each one leaves as its own segment.
            std::thread::sleep(Duration::from_micros(300));
        }
    });
}

/// The ClientHello's handshake message split over two TLS records still routes.
#[test]
fn hello_split_over_two_records_is_routed() {
    routed_with_reshaped_hello("records", "split.example.test", |hello, sock| {
        let header = &hello[..5];
        let payload = &hello[5..];
        // Split inside the server_name, so that neither record alone names the host.
        let name_at = find(payload, b"split.example.test").expect("SNI in hello");
        let cut = name_at + 5;
        for part in [&payload[..cut], &payload[cut..]] {
            let mut rec = vec![header[0], header[1], header[2]];
            rec.extend_from_slice(&(part.len() as u16).to_be_bytes());
            rec.extend_from_slice(part);
            sock.write_all(&rec).unwrap();
        }
    });
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Deterministic pseudo-random bytes, so both ends can produce the same stream.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Sends a real captured hello, then `total` bytes of a pattern, through the gateway at
/// `gw` to an echo upstream, and checks that the hello and every byte come back in order
/// and that nothing follows.
fn echo_byte_exact(gw: SocketAddr, total: usize) -> usize {
    const CHUNK: usize = 1 << 16;
    let hello = fixture("openssl.bin");
    let mut sock = TcpStream::connect(gw).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = sock.try_clone().unwrap();
    let sent_hello = hello.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent_hello).unwrap();
        let mut p = Pattern(0x5eed_1234_abcd_0001);
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..total / CHUNK {
            p.fill(&mut buf);
            writer.write_all(&buf).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });

    let mut echoed_hello = vec![0u8; hello.len()];
    sock.read_exact(&mut echoed_hello).unwrap();
    assert_eq!(echoed_hello, hello, "the hello was replayed unchanged");
    let mut p = Pattern(0x5eed_1234_abcd_0001);
    let mut want = vec![0u8; CHUNK];
    let mut got = vec![0u8; CHUNK];
    let mut received = 0usize;
    while received < total / CHUNK * CHUNK {
        p.fill(&mut want);
        sock.read_exact(&mut got).unwrap();
        assert!(got == want, "mismatch in the chunk at offset {received}");
        received += CHUNK;
    }
    let mut tail = [0u8; 1];
    assert_eq!(sock.read(&mut tail).unwrap(), 0, "nothing after the data");
    sender.join().unwrap();
    received + hello.len()
}

/// 1 GiB each way arrives byte-exact: a real captured hello, then 1 GiB of data, echoed
/// back by the upstream and compared byte for byte.
#[test]
fn one_gib_arrives_byte_exact() {
    let (net, _scratch, _up, gw) = raw_gateway("gib", "openssl.capture.test", "", echo);
    let total = echo_byte_exact(net.addr(1, KAFKA), 1 << 30) as f64;
    gw.wait_metric("snigate_connections_total", &[("outcome", "ok")], 1.0);
    assert_eq!(
        gw.metric("snigate_bytes_total", &[("direction", "upstream")]),
        total
    );
    assert_eq!(
        gw.metric("snigate_bytes_total", &[("direction", "downstream")]),
        total
    );
}

/// Holds pipes until stdin closes, enlarged to 256 KiB each until the kernel refuses: the
/// user's pipe budget (fs.pipe-user-pages-soft) is then spent. Prints how many it got.
const PIPE_HOG: &str = "import os, fcntl, sys
held = []
while True:
    r, w = os.pipe()
    held.append((r, w))
    try:
        fcntl.fcntl(w, 1031, 256 * 1024)
    except OSError:
        break
print(len(held) - 1, flush=True)
sys.stdin.read()
";

/// When other processes of the same user have spent its pipe budget (as other gateways on
/// one host can), snigate relays through the small pipes the kernel still gives:
/// byte-exact, with one warning that names the sysctl. Runs both as an unprivileged user,
/// with no capabilities, so it needs root to start them.
#[test]
fn root_a_spent_pipe_budget_still_relays_byte_exact() {
    if !common::lab::root_or_skip("root_a_spent_pipe_budget_still_relays_byte_exact") {
        return;
    }
    let soft = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft").unwrap();
    assert_ne!(
        soft.trim(),
        "0",
        "fs.pipe-user-pages-soft is 0 (no budget): the fallback cannot happen"
    );
    const UID: u32 = 47213;
    let as_user = [
        "setpriv",
        "--reuid=47213",
        "--regid=47213",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ];
    let mut hog = Proc {
        child: Command::new(as_user[0])
            .args(&as_user[1..])
            .args(["/usr/bin/python3", "-c", PIPE_HOG])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        what: "pipe hog".into(),
    };
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(hog.child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let held: usize = line.trim().parse().unwrap();
    assert!(held > 0, "the hog got no large pipe: {line:?}");

    let net = Net::new();
    let scratch = Scratch::new("pipebudget");
    std::os::unix::fs::chown(&scratch.dir, Some(UID), Some(UID)).unwrap();
    let _up = RawUpstream::start(net.addr(2, KAFKA), echo);
    let routes = route("openssl.capture.test", &format!("{}:{KAFKA}", net.ip(2)));
    // Only the unprivileged port: the user has no capabilities.
    let yaml = format!(
        "gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:{KAFKA}\n  routes:\n{routes}  admin:\n    address: {gw}:{ADMIN}\n",
        gw = net.ip(1)
    );
    let conf = write_config(&scratch.dir, &yaml);
    // The user starts workers from the binary's path, so it must reach it: a copy in the
    // scratch directory, whatever the permissions of the checkout's own directories.
    let bin = scratch.path("snigate");
    std::fs::copy(snigate_bin(), &bin).unwrap();
    let gw = Snigate::spawn_under_from(
        &as_user,
        &bin,
        &scratch.dir,
        &conf,
        &[],
        "snigate.log",
        net.addr(1, ADMIN),
    );
    gw.wait_ready();
    echo_byte_exact(net.addr(1, KAFKA), 16 << 20);
    gw.wait_log("fs.pipe-user-pages-soft");
    echo_byte_exact(net.addr(1, KAFKA), 1 << 20);
    gw.wait_metric("snigate_connections_total", &[("outcome", "ok")], 2.0);
    assert_eq!(
        gw.log_text().matches("fs.pipe-user-pages-soft").count(),
        1,
        "the small pipes are reported once"
    );
    drop(hog.child.stdin.take());
}

/// The client closes its sending side first; the upstream sees EOF, and its answer still
/// reaches the client.
#[test]
fn half_close_is_respected() {
    let (net, _scratch, _up, gw) =
        raw_gateway("halfclose", "kafka.capture.test", "", |mut conn| {
            let mut all = Vec::new();
            conn.read_to_end(&mut all).unwrap();
            let reply = format!("received {} bytes after your EOF", all.len());
            conn.write_all(reply.as_bytes()).unwrap();
            conn.shutdown(Shutdown::Write).unwrap();
        });
    let hello = fixture("kcat.bin");
    let mut sock = TcpStream::connect(net.addr(1, KAFKA)).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sock.write_all(&hello).unwrap();
    sock.write_all(b"last words").unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).unwrap();
    assert_eq!(
        reply,
        format!("received {} bytes after your EOF", hello.len() + 10)
    );
    gw.wait_metric("snigate_connections_total", &[("outcome", "ok")], 1.0);
}

/// A client that stops halfway through its hello is cut at the ClientHello deadline.
#[test]
fn slow_client_is_cut_at_the_deadline() {
    let extra = "  clienthello_timeout_ms: 300\n";
    let (net, _scratch, up, gw) = raw_gateway("deadline", "openssl.capture.test", extra, echo);
    let hello = fixture("openssl.bin");
    let mut sock = TcpStream::connect(net.addr(1, KAFKA)).unwrap();
    sock.write_all(&hello[..hello.len() / 2]).unwrap();
    assert_closed(&mut sock);
    gw.wait_metric(
        "snigate_clienthello_rejects_total",
        &[("reason", "timeout")],
        1.0,
    );
    assert_eq!(up.accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A relayed connection that carries nothing for the idle timeout is closed.
#[test]
fn idle_connection_is_closed() {
    let extra = "  idle_timeout_secs: 1\n";
    let (net, _scratch, _up, gw) = raw_gateway("idle", "openssl.capture.test", extra, echo);
    let hello = fixture("openssl.bin");
    let mut sock = TcpStream::connect(net.addr(1, KAFKA)).unwrap();
    sock.write_all(&hello).unwrap();
    let mut echoed = vec![0u8; hello.len()];
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sock.read_exact(&mut echoed).unwrap();
    assert_closed(&mut sock);
    gw.wait_metric(
        "snigate_connections_total",
        &[("outcome", "idle_timeout")],
        1.0,
    );
}

/// Past max_connections, a new connection is refused at once: long before its hello
/// deadline, even though it never sends a byte. The open ones keep working.
#[test]
fn connection_limit_refuses_excess_quickly() {
    let extra = "  max_connections: 2\n  clienthello_timeout_ms: 60000\n";
    let (net, _scratch, _up, gw) = raw_gateway("limit", "openssl.capture.test", extra, echo);
    let hello = fixture("openssl.bin");
    let open = |n: usize| {
        let mut s = TcpStream::connect(net.addr(1, KAFKA)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(&hello).unwrap();
        let mut echoed = vec![0u8; hello.len()];
        s.read_exact(&mut echoed)
            .unwrap_or_else(|e| panic!("connection {n}: {e}"));
        s
    };
    let mut first = open(1);
    let _second = open(2);
    gw.wait_metric("snigate_active_connections", &[("listener", "kafka")], 2.0);
    // The third sends nothing: only the limit can close it before the 60 s hello deadline.
    let started = std::time::Instant::now();
    let mut third = TcpStream::connect(net.addr(1, KAFKA)).unwrap();
    assert_closed(&mut third);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the excess connection was held for {took:?}, as if it waited for its hello"
    );
    gw.wait_metric(
        "snigate_connections_total",
        &[("outcome", "over_limit")],
        1.0,
    );
    first.write_all(b"still here").unwrap();
    let mut back = [0u8; 10];
    first.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still here");
}

/// `/health`, `/ready` and `/routes` answer; unknown paths are 404.
#[test]
fn admin_endpoints_answer() {
    let net = Net::new();
    let scratch = Scratch::new("admin");
    let routes = route("*.example.test", "{sni}:{port}");
    let gw = Snigate::start(
        &scratch.dir,
        &gateway_yaml(&net, &routes, ""),
        net.addr(1, ADMIN),
    );
    assert_eq!(http_get(gw.admin, "/health").unwrap().0, 200);
    let (status, body) = http_get(gw.admin, "/ready").unwrap();
    assert_eq!((status, body.as_str()), (200, "ready: 1 routes\n"));
    let (_, body) = http_get(gw.admin, "/routes").unwrap();
    assert_eq!(
        body,
        "*.example.test -> {sni}:{port} [static] kind=static\n"
    );
    assert_eq!(http_get(gw.admin, "/nope").unwrap().0, 404);
    let metrics = gw.metrics();
    // snigate_connections_total appears with its first closed connection.
    for name in [
        "snigate_active_connections",
        "snigate_bytes_total",
        "snigate_clienthello_rejects_total",
        "snigate_clienthello_bytes",
        "snigate_upstream_connect_seconds",
        "snigate_routes",
        "snigate_config_reloads_total",
        "snigate_build_info",
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{metrics}"
        );
    }
    assert_eq!(gw.metric("snigate_routes", &[]), 1.0);
    let version = env!("CARGO_PKG_VERSION");
    for process in ["worker", "supervisor"] {
        assert_eq!(
            gw.metric(
                "snigate_build_info",
                &[("process", process), ("version", version)]
            ),
            1.0,
            "{process}"
        );
    }
    assert!(gw.metric("process_open_fds", &[]) > 0.0);
    // Every outcome's series exists at zero before any connection closed.
    for outcome in [
        "ok",
        "reset",
        "loop",
        "denied_source",
        "drained",
        "over_limit",
    ] {
        assert!(
            metrics.contains(&format!("snigate_connections_total{{listener=\"kafka\",outcome=\"{outcome}\",route=\"-\"}} 0")),
            "{outcome}:\n{metrics}"
        );
    }
}
