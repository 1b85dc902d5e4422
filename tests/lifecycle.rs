//! Process life cycle: daemon mode, and graceful upgrade with Pingora's socket hand-over
//! (`snigate -u` takes the listening sockets from the running process on SIGQUIT). A
//! connection opened through the old process keeps flowing during the hand-over, and new
//! connections land on the new one.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

fn open(gw: std::net::SocketAddr, hello: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(gw).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(hello).unwrap();
    let mut echoed = vec![0u8; hello.len()];
    s.read_exact(&mut echoed).unwrap();
    s
}

#[test]
fn upgrade_hands_over_sockets_without_dropping_connections() {
    let net = Net::new();
    let scratch = Scratch::new("upgrade");
    let _up = RawUpstream::start(net.addr(2, 9092), echo);
    let yaml = format!(
        "grace_period_seconds: 30\ngateway:\n  listeners:\n    - name: kafka\n      address: {gw}:9092\n  routes:\n    - sni: openssl.capture.test\n      upstream: {up}:9092\n  admin:\n    address: {gw}:9080\n",
        gw = net.ip(1),
        up = net.ip(2)
    );
    let old = Snigate::start(&scratch.dir, &yaml, net.addr(1, 9080));
    let gw = net.addr(1, 9092);
    let hello = fixture("openssl.bin");
    let mut long_lived = open(gw, &hello);
    echo_roundtrip(&mut long_lived, b"before the upgrade");

    let conf = scratch.path("snigate.yaml");
    let new = Snigate::spawn(&scratch.dir, &conf, &["-u"], "new.log", net.addr(1, 9080));
    // The new process listens on the upgrade socket; then the old one is told to hand over.
    let start = Instant::now();
    while !scratch.path("upgrade.sock").exists() {
        assert!(
            start.elapsed() < PATIENCE,
            "new process never opened the upgrade socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    old.signal("QUIT");
    new.wait_log("Bootstrap done");
    new.wait_ready();
    echo_roundtrip(&mut long_lived, b"during the hand-over");

    // Once the old process stops accepting, new connections are served by the new one.
    let start = Instant::now();
    loop {
        let mut c = open(gw, &hello);
        echo_roundtrip(&mut c, b"new connection");
        drop(c);
        std::thread::sleep(Duration::from_millis(50));
        if new.log_text().contains("outcome=ok") {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the new process never served a connection"
        );
    }
    // The old process stops listening after its close timeout; its open connection lives
    // on through the grace period, and the listener is the new process's alone.
    old.wait_log("Graceful shutdown started");
    old.wait_log("Shutting down");
    echo_roundtrip(&mut long_lived, b"after the old process stopped accepting");
    let mut c = open(gw, &hello);
    echo_roundtrip(&mut c, b"served by the new process alone");
    assert!(
        old.log_text().contains("SIGQUIT received"),
        "{}",
        old.log_text()
    );
}

/// `-d` returns at once, writes the pid file, and the daemon serves until signalled.
#[test]
fn daemon_mode_detaches_and_serves() {
    let net = Net::new();
    let scratch = Scratch::new("daemon");
    let yaml = format!(
        "gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:9092\n  admin:\n    address: {gw}:9080\n",
        gw = net.ip(1)
    );
    let conf = write_config(&scratch.dir, &yaml);
    let status = std::process::Command::new(snigate_bin())
        .args(["-d", "-c"])
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let pid_file = scratch.path("snigate.pid");
    let start = Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(start.elapsed() < PATIENCE, "no pid file");
        std::thread::sleep(Duration::from_millis(20));
    };
    let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists();
    let start = Instant::now();
    while http_get(net.addr(1, 9080), "/ready").map(|r| r.0) != Some(200) {
        assert!(start.elapsed() < PATIENCE, "daemon never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(alive());
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    while alive() {
        assert!(start.elapsed() < PATIENCE, "daemon did not exit on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
}
