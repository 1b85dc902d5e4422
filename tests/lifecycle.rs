//! Process life cycle: the stable process and its workers, `snigate upgrade` (Pingora's
//! socket hand-over underneath), reloads, signals, daemon mode, and the spread drain.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

fn open(gw: SocketAddr, hello: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(gw).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(hello).unwrap();
    let mut echoed = vec![0u8; hello.len()];
    s.read_exact(&mut echoed).unwrap();
    s
}

/// A gateway on host 1 routing `openssl.capture.test` to an echo upstream on host 2.
fn echo_gateway(tag: &str, top: &str, extra: &str) -> (Net, Scratch, RawUpstream, Snigate) {
    let net = Net::new();
    let scratch = Scratch::new(tag);
    let up = RawUpstream::start(net.addr(2, 9092), echo);
    let yaml = format!(
        "{top}gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:9092\n  routes:\n    - sni: openssl.capture.test\n      upstream: {up}:9092\n  admin:\n    address: {gw}:9080\n{extra}",
        gw = net.ip(1),
        up = net.ip(2)
    );
    let gw = Snigate::start(&scratch.dir, &yaml, net.addr(1, 9080));
    (net, scratch, up, gw)
}

fn conf(scratch: &Scratch) -> std::path::PathBuf {
    scratch.path("snigate.yaml")
}

/// Three upgrades in a row: a connection opened before them keeps flowing, new ones are
/// served throughout, the stable pid stays, and no ERROR is logged.
#[test]
fn upgrades_hand_over_without_dropping_connections() {
    let (net, scratch, _up, gw) = echo_gateway("upgrade", "grace_period_seconds: 30\n", "");
    let kafka = net.addr(1, 9092);
    let hello = fixture("openssl.bin");
    let mut long_lived = open(kafka, &hello);
    echo_roundtrip(&mut long_lived, b"before the upgrades");
    let pid_file = std::fs::read_to_string(scratch.path("snigate.pid")).unwrap();
    assert_eq!(pid_file.trim(), gw.pid().to_string());

    for round in 1..=3 {
        let before = gw.worker_pid(&scratch.dir);
        let (ok, out) = upgrade(&conf(&scratch), &[]);
        assert!(ok, "upgrade {round}: {out}\nlog:\n{}", gw.log_text());
        assert!(out.contains("serves"), "{out}");
        let after = gw.worker_pid(&scratch.dir);
        assert_ne!(before, after, "upgrade {round} did not replace the worker");
        let mut c = open(kafka, &hello);
        echo_roundtrip(
            &mut c,
            format!("new connection after upgrade {round}").as_bytes(),
        );
        echo_roundtrip(
            &mut long_lived,
            format!("during upgrade {round}").as_bytes(),
        );
    }
    assert!(pid_alive(gw.pid()), "the stable process exited");
    let pid_file = std::fs::read_to_string(scratch.path("snigate.pid")).unwrap();
    assert_eq!(
        pid_file.trim(),
        gw.pid().to_string(),
        "the pid file changed"
    );
    let log = gw.log_text();
    assert_eq!(log.matches("upgrade done").count(), 3, "{log}");
    assert!(
        !log.contains(" ERROR "),
        "a normal upgrade logged an error:\n{log}"
    );
}

/// `-d` returns at once, writes the stable process's pid, and it serves until signalled.
#[test]
fn daemon_mode_detaches_and_serves() {
    detaches_and_serves("daemon", &["-d"], "");
}

/// Pingora's `daemon: true` in the file does what `-d` does.
#[test]
fn daemon_key_in_the_file_detaches_too() {
    detaches_and_serves("daemonkey", &[], "daemon: true\n");
}

/// Starts snigate with `flags` and `top` at the top of its file; it must return at once
/// and leave a daemon that serves, writes its pid file, and removes it on SIGINT.
fn detaches_and_serves(tag: &str, flags: &[&str], top: &str) {
    let net = Net::new();
    let scratch = Scratch::new(tag);
    let yaml = format!(
        "{top}gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:9092\n  admin:\n    address: {gw}:9080\n",
        gw = net.ip(1)
    );
    let conf = write_config(&scratch.dir, &yaml);
    let mut child = std::process::Command::new(snigate_bin())
        .args(flags)
        .arg("-c")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("snigate {flags:?} stayed in the foreground: it did not detach");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
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
    let start = Instant::now();
    while http_get(net.addr(1, 9080), "/ready").map(|r| r.0) != Some(200) {
        assert!(start.elapsed() < PATIENCE, "daemon never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pid_alive(pid));
    kill("INT", pid);
    let start = Instant::now();
    while pid_alive(pid) {
        assert!(start.elapsed() < PATIENCE, "daemon did not exit on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_file.exists(), "the pid file was left behind");
}

/// On SIGTERM, held connections are closed one by one, spread over at least half the
/// grace period, each with an access-log line saying `drained`; then the process exits.
#[test]
fn held_connections_close_spread_over_the_grace_period() {
    const HELD: usize = 8;
    let (net, _scratch, _up, mut gw) = echo_gateway("drain", "grace_period_seconds: 4\n", "");
    let hello = fixture("openssl.bin");
    let conns: Vec<TcpStream> = (0..HELD).map(|_| open(net.addr(1, 9092), &hello)).collect();
    gw.wait_metric(
        "snigate_active_connections",
        &[("listener", "kafka")],
        HELD as f64,
    );
    let signalled = Instant::now();
    gw.signal("TERM");
    let readers: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return Instant::now(),
                        Ok(_) => continue,
                    }
                }
            })
        })
        .collect();
    let mut closed: Vec<Duration> = readers
        .into_iter()
        .map(|r| r.join().unwrap() - signalled)
        .collect();
    closed.sort();
    let spread = closed[HELD - 1] - closed[0];
    assert!(
        spread >= Duration::from_secs(2),
        "closes were not spread over half the grace period: {closed:?}"
    );
    assert!(closed[HELD - 1] <= Duration::from_secs(10), "{closed:?}");
    gw.wait_exit();
    let log = gw.log_text();
    assert_eq!(log.matches("outcome=drained").count(), HELD, "{log}");
}

/// A config that does not pass `-t`, and a binary that will not start, each fail the
/// upgrade with the reason, and the running worker keeps serving, untouched.
#[test]
fn failed_upgrades_leave_the_running_worker_serving() {
    let (net, scratch, _up, gw) = echo_gateway("badupgrade", "", "");
    let worker = gw.worker_pid(&scratch.dir);
    let hello = fixture("openssl.bin");
    let good = std::fs::read_to_string(conf(&scratch)).unwrap();

    std::fs::write(
        conf(&scratch),
        good.replace("sni: openssl.capture.test", "sni: \"*.test\""),
    )
    .unwrap();
    let (ok, out) = upgrade(&conf(&scratch), &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("gateway.routes[0].sni: invalid wildcard `*.test`"),
        "{out}"
    );
    std::fs::write(conf(&scratch), &good).unwrap();

    let broken = scratch.path("broken-snigate");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'this snigate cannot start' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (ok, out) = upgrade(&conf(&scratch), &["--binary", broken.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("exited") && out.contains("untouched"), "{out}");

    let (ok, out) = upgrade(&conf(&scratch), &["--binary", "/nonexistent/snigate"]);
    assert!(
        !ok && out.contains("cannot start /nonexistent/snigate"),
        "{out}"
    );

    assert_eq!(
        gw.worker_pid(&scratch.dir),
        worker,
        "the running worker was replaced"
    );
    let mut c = open(net.addr(1, 9092), &hello);
    echo_roundtrip(&mut c, b"still served by the same worker");
}

/// SIGQUIT with no new worker waiting for the sockets is an error in the log and nothing
/// more: to the stable process, and to the worker itself.
#[test]
fn sigquit_with_nobody_waiting_keeps_serving() {
    let (net, scratch, _up, gw) = echo_gateway("quit", "", "");
    let worker = gw.worker_pid(&scratch.dir);
    gw.signal("QUIT");
    kill("QUIT", worker);
    gw.wait_log("no new process is waiting for the sockets");
    gw.wait_log("it is not an upgrade here and is ignored");
    let mut c = open(net.addr(1, 9092), &fixture("openssl.bin"));
    echo_roundtrip(&mut c, b"still serving");
    assert_eq!(gw.worker_pid(&scratch.dir), worker);
    assert_eq!(http_get(gw.admin, "/ready").unwrap().0, 200);
}

/// SIGHUP applies a new route to new connections while an open one keeps flowing; a file
/// that does not pass `-t` is logged with the same message and changes nothing.
#[test]
fn sighup_adds_a_route_live_and_ignores_a_broken_file() {
    let (net, scratch, _up, gw) = echo_gateway("hup", "", "");
    let kafka = net.addr(1, 9092);
    let mut held = open(kafka, &fixture("openssl.bin"));
    let text = std::fs::read_to_string(conf(&scratch)).unwrap();
    let added = text.replace(
        "  admin:",
        &format!(
            "    - sni: kafka.capture.test\n      upstream: {}:9092\n  admin:",
            net.ip(2)
        ),
    );
    std::fs::write(conf(&scratch), &added).unwrap();
    gw.signal("HUP");
    wait_routes(&gw, |r| r.contains("kafka.capture.test ->"));
    let mut c = open(kafka, &fixture("kcat.bin"));
    echo_roundtrip(&mut c, b"through the new route");
    echo_roundtrip(&mut held, b"the open connection is untouched");
    gw.wait_metric("snigate_config_reloads_total", &[("outcome", "ok")], 1.0);

    std::fs::write(
        conf(&scratch),
        added.replace(":9092\n  admin:", "\n  admin:"),
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_metric(
        "snigate_config_reloads_total",
        &[("outcome", "failed")],
        1.0,
    );
    gw.wait_log("reload failed: config ");
    let log = gw.log_text();
    assert!(
        log.contains("gateway.routes[1].upstream: invalid upstream"),
        "{log}"
    );
    wait_routes(&gw, |r| r.contains("kafka.capture.test ->"));
    echo_roundtrip(&mut held, b"still untouched");
}

fn wait_routes(gw: &Snigate, pred: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let routes = http_get(gw.admin, "/routes")
            .map(|r| r.1)
            .unwrap_or_default();
        if pred(&routes) {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "routes never matched:\n{routes}\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM on a gateway with no connections: it exits within a second, not after its
/// grace period, and removes its pid file and control socket.
#[test]
fn sigterm_on_an_idle_gateway_exits_within_a_second() {
    let (_net, scratch, _up, mut gw) = echo_gateway("term", "grace_period_seconds: 300\n", "");
    gw.signal("TERM");
    let took = gw.wait_exit();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(!Path::new(&scratch.path("snigate.pid")).exists());
    assert!(!Path::new(&scratch.path("snigate.ctl")).exists());
}
