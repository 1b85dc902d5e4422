//! What operators expect at the edge, through the built binary with real clients: PROXY
//! protocol in and out (with a sender and a receiver written here), JSON access logs in a
//! file of their own, bounded logging of floods, the loop guard, source allow lists, the
//! `reset` outcome, and commands that need no credentials.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KAFKA: u16 = 9092;
const ADMIN: u16 = 9080;

/// A gateway on host 1 (listener `kafka`), with listener keys `listener_extra`, `routes`,
/// and `extra` at the end of `gateway:`.
fn yaml(net: &Net, listener_extra: &str, routes: &str, extra: &str) -> String {
    format!(
        "gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:{KAFKA}\n{listener_extra}  routes:\n{routes}  admin:\n    address: {gw}:{ADMIN}\n{extra}",
        gw = net.ip(1)
    )
}

fn route(sni: &str, upstream: &str, extra: &str) -> String {
    format!("    - sni: \"{sni}\"\n      upstream: \"{upstream}\"\n{extra}")
}

/// A gateway whose one route, `openssl.capture.test`, leads to an echo upstream on host 2;
/// `listener_extra` and `extra` as for [`yaml`].
fn echo_gateway(
    net: &Net,
    scratch: &Scratch,
    listener_extra: &str,
    extra: &str,
) -> (RawUpstream, Snigate) {
    let up = RawUpstream::start(net.addr(2, KAFKA), echo);
    let routes = route(
        "openssl.capture.test",
        &format!("{}:{KAFKA}", net.ip(2)),
        "",
    );
    let gw = Snigate::start(
        &scratch.dir,
        &yaml(net, listener_extra, &routes, extra),
        net.addr(1, ADMIN),
    );
    (up, gw)
}

/// Copies bytes from `a` to `b` until EOF, then passes the EOF on.
fn pipe(mut a: TcpStream, mut b: TcpStream) {
    let _ = std::io::copy(&mut a, &mut b);
    let _ = b.shutdown(Shutdown::Write);
}

fn splice_both(a: TcpStream, b: TcpStream) {
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    std::thread::spawn(move || pipe(a2, b2));
    pipe(b, a);
}

/// A PROXY protocol sender, as a load balancer would be: each connection to `listen` is
/// passed to `to` behind `header`.
fn proxy_sender(listen: SocketAddr, to: SocketAddr, header: Vec<u8>) {
    let l = TcpListener::bind(listen).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let header = header.clone();
            std::thread::spawn(move || {
                let mut up = TcpStream::connect(to).unwrap();
                up.write_all(&header).unwrap();
                splice_both(c, up);
            });
        }
    });
}

/// The PROXY header a receiver read: (source, destination) as text.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A PROXY protocol receiver written for the test: reads a v1 or v2 header (parsed here,
/// not with snigate's parser), records the addresses, and passes the rest to `to`.
fn proxy_receiver(listen: SocketAddr, to: SocketAddr) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    RawUpstream::start(listen, move |mut c| {
        let mut first = [0u8; 16];
        c.read_exact(&mut first).unwrap();
        let (src, dst) = if &first[..6] == b"PROXY " {
            let mut line = first.to_vec();
            while !line.ends_with(b"\r\n") {
                let mut b = [0u8; 1];
                c.read_exact(&mut b).unwrap();
                line.push(b[0]);
            }
            let text = String::from_utf8(line).unwrap();
            let f: Vec<&str> = text.trim_end().split(' ').collect();
            (format!("{}:{}", f[2], f[4]), format!("{}:{}", f[3], f[5]))
        } else {
            assert_eq!(&first[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
            assert_eq!(first[12], 0x21, "version 2, PROXY command");
            assert_eq!(first[13], 0x11, "TCP over IPv4");
            let len = u16::from_be_bytes([first[14], first[15]]) as usize;
            let mut body = vec![0u8; len];
            c.read_exact(&mut body).unwrap();
            let ip = |b: &[u8]| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
            let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
            (
                format!("{}:{}", ip(&body[0..4]), port(&body[8..10])),
                format!("{}:{}", ip(&body[4..8]), port(&body[10..12])),
            )
        };
        record.lock().unwrap().push((src, dst));
        splice_both(c, TcpStream::connect(to).unwrap());
    });
    seen
}

fn verified(out: &str, name: &str) -> bool {
    peer_cn(out).as_deref() == Some(name) && out.contains("Verify return code: 0 (ok)")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn proxy_protocol_in_names_the_original_client() {
    let net = Net::new();
    let scratch = Scratch::new("ppin");
    let pki = Pki::new(&scratch.dir);
    let name = "pp.example.test";
    let _up = tls_upstream(&pki, name, net.addr(2, KAFKA));
    let routes = route(name, &format!("{}:{KAFKA}", net.ip(2)), "");
    let gw = Snigate::start(
        &scratch.dir,
        &yaml(&net, "      proxy_protocol: accept\n", &routes, ""),
        net.addr(1, ADMIN),
    );
    let gateway = net.addr(1, KAFKA);
    let v1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 40001 9092\r\n".to_vec();
    proxy_sender(net.addr(3, KAFKA), gateway, v1);
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    v2.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    v2.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v2.extend_from_slice(&40002u16.to_be_bytes());
    v2.extend_from_slice(&9092u16.to_be_bytes());
    proxy_sender(net.addr(4, KAFKA), gateway, v2);

    for relay in [net.addr(3, KAFKA), net.addr(4, KAFKA)] {
        let out = s_client(relay, Some(name), &pki.ca());
        assert!(verified(&out, name), "{out}");
    }
    gw.wait_log("client=198.51.100.7:40001 listener=kafka sni=pp.example.test");
    gw.wait_log("client=[2001:db8::7]:40002 listener=kafka sni=pp.example.test");

    // Without a header, the same client is refused.
    let out = s_client(gateway, Some(name), &pki.ca());
    assert!(!verified(&out, name), "{out}");
    gw.wait_metric(
        "snigate_clienthello_rejects_total",
        &[("reason", "proxy_protocol")],
        1.0,
    );
}

#[test]
fn proxy_protocol_out_carries_the_client_and_the_listener_address() {
    let net = Net::new();
    let scratch = Scratch::new("ppout");
    let pki = Pki::new(&scratch.dir);
    let (n1, n2) = ("v1.example.test", "v2.example.test");
    let _s1 = tls_upstream(&pki, n1, net.addr(5, 9443));
    let _s2 = tls_upstream(&pki, n2, net.addr(6, 9443));
    let seen1 = proxy_receiver(net.addr(2, KAFKA), net.addr(5, 9443));
    let seen2 = proxy_receiver(net.addr(3, KAFKA), net.addr(6, 9443));
    let routes = [
        route(
            n1,
            &format!("{}:{KAFKA}", net.ip(2)),
            "      send_proxy: v1\n",
        ),
        route(
            n2,
            &format!("{}:{KAFKA}", net.ip(3)),
            "      send_proxy: v2\n",
        ),
    ]
    .concat();
    let gw = Snigate::start(
        &scratch.dir,
        &yaml(&net, "", &routes, ""),
        net.addr(1, ADMIN),
    );
    let gateway = net.addr(1, KAFKA);
    for (name, seen) in [(n1, &seen1), (n2, &seen2)] {
        let out = s_client(gateway, Some(name), &pki.ca());
        assert!(verified(&out, name), "{out}");
        let got = seen.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        let (src, dst) = &got[0];
        assert_eq!(dst, &gateway.to_string(), "the listener the client reached");
        gw.wait_log(&format!("client={src} listener=kafka sni={name}"));
    }
}

#[test]
fn a_reload_applies_a_new_fallback_and_its_proxy_header() {
    let net = Net::new();
    let scratch = Scratch::new("fbreload");
    let pki = Pki::new(&scratch.dir);
    let name = "elsewhere.example.test";
    let _tls = tls_upstream(&pki, name, net.addr(5, 9443));
    let seen = proxy_receiver(net.addr(2, KAFKA), net.addr(5, 9443));
    let routes = route("only.example.test", &format!("{}:{KAFKA}", net.ip(3)), "");
    let with = |fallback: &str| yaml(&net, fallback, &routes, "");
    let gw = Snigate::start(
        &scratch.dir,
        &with(&format!("      fallback: {}:9443\n", net.ip(5))),
        net.addr(1, ADMIN),
    );
    let gateway = net.addr(1, KAFKA);
    let out = s_client(gateway, Some(name), &pki.ca());
    assert!(verified(&out, name), "{out}");
    assert!(seen.lock().unwrap().is_empty());

    // The fallback now sits behind a PROXY protocol receiver: both changes apply on SIGHUP.
    write_config(
        &scratch.dir,
        &with(&format!(
            "      fallback: {}:{KAFKA}\n      fallback_send_proxy: v2\n",
            net.ip(2)
        )),
    );
    gw.signal("HUP");
    gw.wait_metric("snigate_config_reloads_total", &[("outcome", "ok")], 1.0);
    let out = s_client(gateway, Some(name), &pki.ca());
    assert!(verified(&out, name), "{out}");
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].1,
        gateway.to_string(),
        "the listener the client reached"
    );
}

fn access_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn echo_once(gw: SocketAddr, hello: &[u8], msg: &[u8]) {
    let mut s = TcpStream::connect(gw).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(hello).unwrap();
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; hello.len() + msg.len()];
    s.read_exact(&mut back).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
}

#[test]
fn json_access_log_goes_to_its_file_and_is_reopened_on_sigusr1() {
    let net = Net::new();
    let scratch = Scratch::new("jsonlog");
    let path = scratch.path("access.log");
    let extra = format!(
        "  access_log:\n    format: json\n    path: {}\n",
        path.display()
    );
    let (_up, gw) = echo_gateway(&net, &scratch, "", &extra);
    let hello = fixture("openssl.bin");
    echo_once(net.addr(1, KAFKA), &hello, b"twelve bytes");
    wait_until("the access line was never written", || {
        access_lines(&path).len() == 1
    });
    let line = &access_lines(&path)[0];
    assert_eq!(line["listener"], "kafka");
    assert_eq!(line["sni"], "openssl.capture.test");
    assert_eq!(line["route"], "openssl.capture.test");
    assert_eq!(line["upstream"], format!("{}:{KAFKA}", net.ip(2)));
    assert_eq!(line["bytes_up"], (hello.len() + 12) as u64);
    assert_eq!(line["bytes_down"], (hello.len() + 12) as u64);
    assert_eq!(line["outcome"], "ok");
    assert_eq!(line["closed_by"], "client");
    assert!(
        line["duration_ms"].is_u64() && line["connect_ms"].is_u64(),
        "{line}"
    );
    assert!(
        line["client"].as_str().unwrap().starts_with("127."),
        "{line}"
    );
    assert!(
        !gw.log_text().contains("sni=openssl.capture.test"),
        "access lines left the file"
    );

    // logrotate moves the file away and signals; the next line goes to a new file.
    let rotated = scratch.path("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    gw.signal("USR1");
    gw.wait_log("reopened the access log");
    echo_once(net.addr(1, KAFKA), &hello, b"after rotation");
    wait_until("no line in the new file", || access_lines(&path).len() == 1);
    assert_eq!(access_lines(&rotated).len(), 1);
}

#[test]
fn a_flood_of_refusals_is_logged_at_a_bounded_rate() {
    let net = Net::new();
    let scratch = Scratch::new("flood");
    let path = scratch.path("access.log");
    let extra = format!(
        "  max_connections: 1\n  access_log:\n    format: json\n    path: {}\n",
        path.display()
    );
    let (_up, gw) = echo_gateway(&net, &scratch, "", &extra);
    let hello = fixture("openssl.bin");
    let mut held = TcpStream::connect(net.addr(1, KAFKA)).unwrap();
    held.write_all(&hello).unwrap();
    let mut echoed = vec![0u8; hello.len()];
    held.set_read_timeout(Some(PATIENCE)).unwrap();
    held.read_exact(&mut echoed).unwrap();
    const FLOOD: usize = 300;
    for _ in 0..FLOOD {
        let mut s = TcpStream::connect(net.addr(1, KAFKA)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let _ = s.read(&mut [0u8; 1]);
    }
    gw.wait_metric(
        "snigate_connections_total",
        &[("outcome", "over_limit")],
        FLOOD as f64,
    );
    // Summaries are written once their second is over.
    let count = || {
        let lines = access_lines(&path);
        let written = lines
            .iter()
            .filter(|l| l["outcome"] == "over_limit" && l.get("suppressed").is_none())
            .count();
        let suppressed: u64 = lines.iter().filter_map(|l| l["suppressed"].as_u64()).sum();
        (written, suppressed)
    };
    wait_until("written and suppressed lines never added up", || {
        let (w, s) = count();
        w as u64 + s == FLOOD as u64
    });
    let (written, suppressed) = count();
    assert!(
        written <= 40 && suppressed > 0,
        "{written} lines written, {suppressed} suppressed"
    );
}

#[test]
fn the_loop_guard_refuses_a_route_back_to_the_gateway() {
    let net = Net::new();
    let scratch = Scratch::new("loop");
    let pki = Pki::new(&scratch.dir);
    let routes = route("loop.example.test", &format!("{}:{KAFKA}", net.ip(1)), "");
    let gw = Snigate::start(
        &scratch.dir,
        &yaml(&net, "", &routes, ""),
        net.addr(1, ADMIN),
    );
    for _ in 0..3 {
        let out = s_client(net.addr(1, KAFKA), Some("loop.example.test"), &pki.ca());
        assert!(peer_cn(&out).is_none(), "{out}");
    }
    gw.wait_metric("snigate_connections_total", &[("outcome", "loop")], 3.0);
    // Three client connections, three records: nothing fanned out.
    assert_eq!(gw.metric("snigate_connections_total", &[]), 3.0);
    let log = gw.log_text();
    assert_eq!(
        log.matches("refusing SNI loop.example.test").count(),
        1,
        "{log}"
    );
}

/// A connection from `source` with a captured hello: true when the upstream echoed it.
fn from_source(source: &str, gw: SocketAddr, hello: &[u8]) -> bool {
    // std cannot bind before connecting: make the socket here.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    let bind = |addr: SocketAddr| {
        let SocketAddr::V4(a) = addr else {
            panic!("IPv4 only")
        };
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            },
            sin_zero: [0; 8],
        }
    };
    let local = bind(format!("{source}:0").parse().unwrap());
    let remote = bind(gw);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    unsafe {
        assert_eq!(
            libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(
            libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len),
            0
        );
    }
    let mut s = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(hello);
    let mut back = vec![0u8; hello.len()];
    s.read_exact(&mut back).is_ok() && back == hello
}

#[test]
fn an_allow_list_closes_other_sources_before_reading() {
    let net = Net::new();
    let scratch = Scratch::new("allow");
    let allow = format!("      allow: [\"{}/32\"]\n", net.ip(50));
    let (up, gw) = echo_gateway(&net, &scratch, &allow, "");
    let hello = fixture("openssl.bin");
    assert!(
        from_source(&net.ip(50), net.addr(1, KAFKA), &hello),
        "the allowed source was refused"
    );
    assert!(
        !from_source(&net.ip(60), net.addr(1, KAFKA), &hello),
        "another source got through"
    );
    gw.wait_metric(
        "snigate_connections_total",
        &[("outcome", "denied_source")],
        1.0,
    );
    assert_eq!(up.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    gw.wait_log("is not in listener kafka's allow list");
}

#[test]
fn with_proxy_protocol_the_allow_list_judges_the_header() {
    let net = Net::new();
    let scratch = Scratch::new("allowpp");
    let listener = "      proxy_protocol: accept\n      allow: [198.51.100.0/24]\n";
    let (_up, gw) = echo_gateway(&net, &scratch, listener, "");
    let gateway = net.addr(1, KAFKA);
    proxy_sender(
        net.addr(3, KAFKA),
        gateway,
        b"PROXY TCP4 198.51.100.9 192.0.2.1 5000 9092\r\n".to_vec(),
    );
    proxy_sender(
        net.addr(4, KAFKA),
        gateway,
        b"PROXY TCP4 203.0.113.9 192.0.2.1 5000 9092\r\n".to_vec(),
    );
    let hello = fixture("openssl.bin");
    let try_via = |relay: SocketAddr| {
        let mut s = TcpStream::connect(relay).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(&hello).unwrap();
        let mut back = vec![0u8; hello.len()];
        s.read_exact(&mut back).is_ok()
    };
    assert!(try_via(net.addr(3, KAFKA)), "198.51.100.9 is allowed");
    assert!(!try_via(net.addr(4, KAFKA)), "203.0.113.9 is not");
    gw.wait_metric(
        "snigate_connections_total",
        &[("outcome", "denied_source")],
        1.0,
    );
    gw.wait_log("203.0.113.9 is not in listener kafka's allow list");
}

#[test]
fn a_peer_reset_is_its_own_outcome() {
    let net = Net::new();
    let scratch = Scratch::new("reset");
    let (_up, gw) = echo_gateway(&net, &scratch, "", "");
    let hello = fixture("openssl.bin");
    let mut s = TcpStream::connect(net.addr(1, KAFKA)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(&hello).unwrap();
    let mut back = vec![0u8; hello.len()];
    s.read_exact(&mut back).unwrap();
    // Unread bytes waiting, then close: the kernel answers with a reset, as a TLS 1.3
    // client does when it leaves its session tickets unread.
    let unread = b"echoed but never read";
    s.write_all(unread).unwrap();
    wait_until("the echo never came back", || {
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int, the bytes waiting in the socket's receive queue.
        unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::FIONREAD,
                &mut queued,
            )
        };
        queued as usize >= unread.len()
    });
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
    gw.wait_metric("snigate_connections_total", &[("outcome", "reset")], 1.0);
    assert_eq!(
        gw.metric("snigate_connections_total", &[("outcome", "relay_error")]),
        0.0
    );
    gw.wait_log("outcome=reset closed_by=client");
}

#[test]
fn reading_routes_from_the_state_file_needs_no_credentials() {
    let scratch = Scratch::new("nocreds");
    let state = scratch.path("state.yaml");
    std::fs::write(
        &state,
        "clusters:\n  prod:\n    names:\n      b0-pkc-1.eu.example.test:\n        kind: broker\n        port: 9092\n        last_seen: 1\n",
    )
    .unwrap();
    let yaml = format!(
        "gateway:\n  listeners:\n    - name: kafka\n      address: 127.0.0.1:9092\n  state_file: {}\n  clusters:\n    - name: prod\n      bootstrap: pkc-1.eu.example.test:9092\n      api_key: ${{SNIGATE_TEST_UNSET_KEY}}\n      api_secret: ${{SNIGATE_TEST_UNSET_SECRET}}\n",
        state.display()
    );
    let conf = write_config(&scratch.dir, &yaml);
    let run = |args: &[&str]| {
        std::process::Command::new(snigate_bin())
            .args(args)
            .arg("-c")
            .arg(&conf)
            .env_remove("SNIGATE_TEST_UNSET_KEY")
            .env_remove("SNIGATE_TEST_UNSET_SECRET")
            .output()
            .unwrap()
    };
    let out = run(&["routes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("b0-pkc-1.eu.example.test"),
        "{text}"
    );
    let out = run(&["hosts", "--gateway-address", "10.0.0.5"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.0.0.5 b0-pkc-1.eu.example.test"));
    // Asking the cluster needs them, and says which.
    let out = run(&["routes", "--discover"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("SNIGATE_TEST_UNSET_KEY is not set"),
        "{err}"
    );
}
