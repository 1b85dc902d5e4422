//! Egress through a forward proxy, in network namespaces (needs root; CI runs as root).
//! The gateway's namespace has no route to the simulated cloud and cannot resolve its
//! names: everything, discovery included, goes through Debian's squid (HTTP CONNECT with
//! basic auth) or microsocks (SOCKS5 with a username and password) in the proxy's own
//! namespace.

mod common;

use common::lab::*;
use common::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const USER: &str = "svc-snigate";
const PASSWORD: &str = "Pr0xy-pa55word";
const WRONG: &str = "not-the-Pr0xy-pa55word";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Http,
    Socks5,
}

impl Kind {
    fn url(self, pass: &str) -> String {
        match self {
            Kind::Http => format!("http://{USER}:{pass}@{PROXY_IP}:3128"),
            Kind::Socks5 => format!("socks5://{USER}:{pass}@{PROXY_IP}:1080"),
        }
    }

    fn label(self) -> String {
        match self {
            Kind::Http => format!("http://{PROXY_IP}:3128"),
            Kind::Socks5 => format!("socks5://{PROXY_IP}:1080"),
        }
    }

    fn port(self) -> u16 {
        match self {
            Kind::Http => 3128,
            Kind::Socks5 => 1080,
        }
    }
}

/// Waits until something in `ns` accepts on `ip:port`.
fn wait_port(lab: &Lab, ns: &str, ip: &str, port: u16, what: &str) {
    let start = Instant::now();
    let probe = format!("exec 3<>/dev/tcp/{ip}/{port}");
    loop {
        if lab.run(ns, 2, &["bash", "-c", &probe]).0 {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what} never accepted on {ip}:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the proxy in `px`, with `USER`/`PASSWORD` as its only credentials; returns its
/// process index and, for squid, its access log.
fn start_proxy(lab: &mut Lab, kind: Kind) -> (usize, Option<PathBuf>) {
    let px = lab.px.clone().unwrap();
    let dir = lab.path("proxy");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("proxy.log");
    let idx = match kind {
        Kind::Http => {
            let hash = std::process::Command::new("openssl")
                .args(["passwd", "-apr1", PASSWORD])
                .output()
                .unwrap();
            assert!(hash.status.success());
            let hash = String::from_utf8(hash.stdout).unwrap();
            std::fs::write(dir.join("htpasswd"), format!("{USER}:{}", hash.trim())).unwrap();
            let d = dir.display();
            let conf = format!(
                "http_port {PROXY_IP}:3128
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log
coredump_dir {d}
cache deny all
auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/htpasswd
auth_param basic realm snigate-test
acl authed proxy_auth REQUIRED
acl tunnel_ports port 9092 443
acl CONNECT method CONNECT
http_access deny CONNECT !tunnel_ports
http_access allow authed
http_access deny all
"
            );
            std::fs::write(dir.join("squid.conf"), conf).unwrap();
            // Squid drops to its own user: it must be able to write its logs.
            let ok = std::process::Command::new("chown")
                .args(["-R", "proxy", &dir.display().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
            // Squid reads the hosts file once, at start: give it the broker that the test
            // adds later (there is no DNS server in the lab).
            let hosts = format!("/etc/netns/{px}/hosts");
            let mut text = std::fs::read_to_string(&hosts).unwrap();
            text.push_str(&format!("{PROXIED_BROKER_4} {}\n", broker(3)));
            std::fs::write(&hosts, text).unwrap();
            let conf = dir.join("squid.conf").display().to_string();
            lab.spawn(&px, &["squid", "-N", "-f", &conf], &[], &log)
        }
        Kind::Socks5 => lab.spawn(
            &px,
            &[
                "microsocks",
                "-i",
                PROXY_IP,
                "-p",
                "1080",
                "-u",
                USER,
                "-P",
                PASSWORD,
            ],
            &[],
            &log,
        ),
    };
    wait_port(lab, &px, PROXY_IP, kind.port(), "the proxy");
    let access = (kind == Kind::Http).then(|| dir.join("access.log"));
    (idx, access)
}

/// The lab's gateway config with `egress_proxy` taken from the environment, plus a static
/// route `badcreds.example.test` whose own proxy has the wrong password.
fn proxied_conf(lab: &Lab, kind: Kind) -> PathBuf {
    let routes = format!(
        "  egress_proxy: {}\n  routes:\n    - sni: badcreds.example.test\n      upstream: pkac-sim01.{DOMAIN}:443\n      egress_proxy: {}\n    - sni: loop.example.test\n      upstream: pkac-sim01.{DOMAIN}:443\n      egress_proxy: http://{SELF_NAME}:9092\n",
        kind.url("${PROXY_PASSWORD}").replace(USER, "${PROXY_USER}"),
        kind.url("${PROXY_WRONG_PASSWORD}").replace(USER, "${PROXY_USER}"),
    );
    lab.gateway_conf("sim-secret", "", &routes)
}

/// A name that the gateway's host resolves to the gateway's own listener address.
const SELF_NAME: &str = "gw-self.example.test";

fn start_proxied_gateway(lab: &mut Lab, kind: Kind) -> usize {
    let conf = proxied_conf(lab, kind);
    let hosts = format!("/etc/netns/{}/hosts", lab.gw);
    let mut text = std::fs::read_to_string(&hosts).unwrap_or_default();
    text.push_str(&format!("{GATEWAY_IP} {SELF_NAME}\n"));
    lab.set_hosts(&lab.gw.clone(), &text);
    let idx = lab.spawn_gateway_with(
        &conf,
        &[
            ("PROXY_USER", USER),
            ("PROXY_PASSWORD", PASSWORD),
            ("PROXY_WRONG_PASSWORD", WRONG),
        ],
    );
    lab.wait_ready(idx);
    idx
}

/// `curl` from the client namespace to a cloud HTTPS endpoint through the gateway.
fn curl(lab: &Lab, url: &str) -> (bool, String) {
    let ca = lab.cloud_dir().join("ca.pem").display().to_string();
    lab.run(
        &lab.cl,
        20,
        &[
            "curl",
            "-sS",
            "--cacert",
            &ca,
            "-u",
            "sim-key:sim-secret",
            url,
        ],
    )
}

fn snigate_log(lab: &Lab) -> String {
    std::fs::read_to_string(lab.path("snigate.log")).unwrap_or_default()
}

/// Waits for the first access-log line that `pred` accepts (lines are flushed in batches).
fn access_line(lab: &Lab, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let log = snigate_log(lab);
        if let Some(line) = log.lines().find(|l| pred(l)) {
            return line.to_owned();
        }
        let access: Vec<&str> = log.lines().filter(|l| l.contains(" outcome=")).collect();
        let tail = access[access.len().saturating_sub(30)..].join("\n");
        assert!(
            start.elapsed() < PATIENCE,
            "no such access line; the last ones:\n{tail}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `snigate ARGS` in the gateway's namespace, with the gateway's environment.
fn snigate_cli(lab: &Lab, args: &[&str]) -> (bool, String) {
    let env = [
        "env",
        &format!("PROXY_USER={USER}"),
        &format!("PROXY_PASSWORD={PASSWORD}"),
        &format!("PROXY_WRONG_PASSWORD={WRONG}"),
        "SIM_KEY=sim-key",
    ]
    .map(|s| s.to_owned());
    let mut full: Vec<&str> = env.iter().map(String::as_str).collect();
    full.push(snigate_bin());
    full.extend_from_slice(args);
    lab.run(&lab.gw, 30, &full)
}

/// Everything a user could see: the log, `-t`, `/routes`, `snigate routes` (with and
/// without `--discover`), the state file.
fn assert_no_password(lab: &Lab, kind: Kind) {
    let conf = lab.path("snigate.yaml").display().to_string();
    let run = |args: &[&str]| snigate_cli(lab, args).1;
    let seen = [
        ("the log", snigate_log(lab)),
        ("-t", run(&["-t", "-c", &conf])),
        ("/routes", lab.admin("/routes").1),
        ("/routes?format=json", lab.admin("/routes?format=json").1),
        ("/metrics", lab.admin("/metrics").1),
        ("/status", lab.admin("/status").1),
        ("snigate routes", run(&["routes", "-c", &conf])),
        (
            "snigate routes --discover",
            run(&["routes", "--discover", "-c", &conf]),
        ),
        (
            "the state file",
            std::fs::read_to_string(lab.path("state.yaml")).unwrap_or_default(),
        ),
    ];
    for (what, text) in seen {
        for secret in [PASSWORD, WRONG] {
            assert!(
                !text.contains(secret),
                "{kind_label}: the proxy password appears in {what}:\n{text}",
                kind_label = kind.label()
            );
        }
    }
}

/// The whole story through one kind of proxy.
fn through(kind: Kind, tag: &str) {
    let mut lab = Lab::behind_proxy(tag);
    lab.start_cloud();
    // The gateway's namespace cannot reach the cloud by itself.
    let direct = lab.run(
        &lab.gw,
        3,
        &["bash", "-c", "exec 3<>/dev/tcp/192.0.2.10/9092"],
    );
    assert!(!direct.0, "the gateway reaches the cloud without the proxy");
    let (proxy, squid_log) = start_proxy(&mut lab, kind);
    let gw = start_proxied_gateway(&mut lab, kind);

    // Discovery went through the proxy: every broker is routed, and kcat lists them all.
    let routes = lab.admin("/routes").1;
    for i in 0..3 {
        assert!(routes.contains(&format!("{} -> ", broker(i))), "{routes}");
    }
    let (ok, out) = lab.kcat_list();
    assert!(ok, "{out}\n{}", snigate_log(&lab));
    for i in 0..3 {
        assert!(out.contains(&format!("at {}:9092", broker(i))), "{out}");
    }
    let (ok, out) = lab.tls_verifies(&broker(0));
    assert!(ok, "{out}");
    no_tunnel_lingers(&lab);

    // 1,000 messages produced and consumed exactly once, through gateway and proxy.
    let load = KafkaLoad::start(&mut lab, tag, 1000, 500, 50, 4);
    let summary = load.finish(&mut lab);
    eprintln!("{tag}: {summary}");

    // REST and Schema Registry, by curl: the cloud's own answers, over its own TLS.
    let (ok, out) = curl(&lab, &format!("https://psrc-sim01.{DOMAIN}/subjects"));
    assert!(ok && out.contains("demo-value"), "{out}");
    let (ok, out) = curl(
        &lab,
        &format!("https://pkac-sim01.{DOMAIN}/kafka/v3/clusters"),
    );
    assert!(ok && out.contains("\"error_code\":404"), "{out}");

    // A broker added mid-test is discovered and routed, through the proxy.
    lab.control(&format!("add 4 {PROXIED_BROKER_4}"));
    lab.wait_admin("/routes", "new broker routed", |_, b| {
        b.contains(&format!("{} -> ", broker(3)))
    });
    let (ok, out) = lab.tls_verifies(&broker(3));
    assert!(ok, "{out}");
    // `snigate routes --discover`, README's check of the path, refreshes through the proxy
    // on its own (the gateway host has no other way out) and lists every broker.
    let conf = lab.path("snigate.yaml").display().to_string();
    let (ok, out) = snigate_cli(&lab, &["routes", "--discover", "-c", &conf]);
    assert!(ok, "{out}");
    for i in 0..4 {
        let b = broker(i);
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{b} ")) && l.ends_with("cluster:sim")),
            "{b}:\n{out}"
        );
    }

    // The access log names the proxy and its answer time; metrics count its tunnels.
    let label = kind.label();
    let sni = format!("sni={} ", broker(3));
    let line = access_line(&lab, |l| l.contains(&sni) && l.contains("outcome=ok"));
    assert!(
        line.contains(&format!(
            "proxy={label} proxy_addr={PROXY_IP}:{} proxy_reply=ok proxy_ms=",
            kind.port()
        )),
        "{line}"
    );
    // A route whose proxy's name resolves to the gateway itself: the loop guard refuses it
    // (the `-t` check only knows addresses), and nothing is sent anywhere.
    let _ = lab.run(
        &lab.cl,
        10,
        &[
            "openssl",
            "s_client",
            "-connect",
            &format!("{GATEWAY_IP}:9092"),
            "-servername",
            "loop.example.test",
        ],
    );
    let line = access_line(&lab, |l| l.contains("sni=loop.example.test "));
    assert!(
        line.contains("outcome=loop") && line.contains("proxy_reply=loop"),
        "{line}"
    );

    let metrics = lab.admin("/metrics").1;
    let tunnels = metric_value(
        &metrics,
        "snigate_egress_proxy_connections_total",
        &[("proxy", &label), ("result", "ok")],
    );
    assert!(tunnels > 100.0, "{tunnels} tunnels counted:\n{metrics}");
    assert!(
        metric_value(
            &metrics,
            "snigate_egress_proxy_answer_seconds_count",
            &[("proxy", &label)]
        ) >= tunnels,
        "{metrics}"
    );
    // Squid was asked for names, never for addresses the gateway resolved.
    if let Some(path) = &squid_log {
        let access = std::fs::read_to_string(path).unwrap();
        assert!(
            access.contains(&format!("CONNECT {}:9092", broker(3))),
            "{access}"
        );
        assert!(!access.contains("CONNECT 192.0.2."), "{access}");
    }

    // Wrong credentials: proxy_error, with the proxy's code, and no password anywhere.
    let (_, out) = lab.run(
        &lab.cl,
        10,
        &[
            "openssl",
            "s_client",
            "-connect",
            &format!("{GATEWAY_IP}:443"),
            "-servername",
            "badcreds.example.test",
        ],
    );
    assert!(!out.contains("BEGIN CERTIFICATE"), "{out}");
    let want = match kind {
        Kind::Http => "proxy_reply=407",
        Kind::Socks5 => "proxy_reply=socks5:auth",
    };
    let line = access_line(&lab, |l| l.contains("sni=badcreds.example.test"));
    assert!(
        line.contains("outcome=proxy_error") && line.contains(want),
        "{line}"
    );
    assert!(
        metric_value(
            &lab.admin("/metrics").1,
            "snigate_egress_proxy_connections_total",
            &[("result", "auth_failed")],
        ) >= 1.0
    );
    assert_no_password(&lab, kind);

    // The proxy stops mid-run: the held session ends with it, new connections fail fast
    // with proxy_error, and the last good routes are kept.
    let held = lab.hold_session(&broker(0));
    lab.wait_admin("/metrics", "the held session is open", |_, m| {
        metric_value(
            m,
            "snigate_route_active_connections",
            &[("route", &broker(0))],
        ) >= 1.0
    });
    lab.stop(proxy);
    let start = Instant::now();
    while matches!(lab.procs[held].child.try_wait(), Ok(None)) {
        assert!(
            start.elapsed() < PATIENCE,
            "the held session outlived the proxy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let begun = Instant::now();
    let (ok, _) = curl(&lab, &format!("https://psrc-sim01.{DOMAIN}/subjects"));
    assert!(!ok, "a connection succeeded with the proxy stopped");
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "{:?}",
        begun.elapsed()
    );
    lab.wait_admin("/metrics", "proxy_error counted", |_, m| {
        metric_value(
            m,
            "snigate_connections_total",
            &[
                ("route", &format!("psrc-sim01.{DOMAIN}")),
                ("outcome", "proxy_error"),
            ],
        ) >= 1.0
    });
    lab.wait_admin("/metrics", "discovery fails without the proxy", |_, m| {
        metric_value(
            m,
            "snigate_cluster_refreshes_total",
            &[("cluster", "sim"), ("outcome", "failed")],
        ) >= 2.0
    });
    let routes = lab.admin("/routes").1;
    for i in 0..4 {
        assert!(
            routes.contains(&format!("{} -> ", broker(i))),
            "routes lost:\n{routes}"
        );
    }
    assert_eq!(lab.admin("/ready").0, 200);
    lab.stop_gateway(gw);
}

/// Discovery's tunnels are one-shot listeners on loopback: once librdkafka has connected,
/// nothing listens in the gateway's namespace but its own listeners and admin endpoint.
/// (A tunnel may be open for the moment between a lookup and its connect: look again.)
fn no_tunnel_lingers(lab: &Lab) {
    let own = [
        format!("{GATEWAY_IP}:9092"),
        format!("{GATEWAY_IP}:443"),
        "127.0.0.1:9080".to_owned(),
    ];
    let mut last = Vec::new();
    for _ in 0..20 {
        let (ok, out) = lab.run(&lab.gw, 5, &["ss", "-ltnH"]);
        assert!(ok, "{out}");
        last = out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
            .filter(|a| !own.contains(a))
            .collect();
        if last.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("listeners besides the gateway's own: {last:?}");
}

#[test]
fn netns_everything_goes_through_squid_with_basic_auth() {
    if !root_or_skip("netns_everything_goes_through_squid_with_basic_auth") {
        return;
    }
    through(Kind::Http, "egress-http");
}

#[test]
fn netns_everything_goes_through_a_socks5_proxy_with_a_password() {
    if !root_or_skip("netns_everything_goes_through_a_socks5_proxy_with_a_password") {
        return;
    }
    through(Kind::Socks5, "egress-socks");
}

/// Reads until EOF (or an error); returns what came and how long it took.
fn read_to_close(s: &mut std::net::TcpStream) -> (Vec<u8>, Duration) {
    use std::io::Read;
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (got, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Proxies that answer garbage or never answer: each connection ends with `proxy_error`,
/// and the client's connection is closed within the connect timeout. (A proxy written as
/// one of the gateway's own addresses is refused by `-t`; one whose name resolves to it is
/// caught by the loop guard, in `through`.) A proxy that opens the tunnel and sends the upstream's first
/// bytes with its answer has them passed on byte-exact, and it was asked for the name.
#[test]
fn garbage_and_silent_proxies_fail_cleanly_within_the_connect_timeout() {
    use std::io::{BufRead, Read, Write};
    let net = Net::new();
    let scratch = Scratch::new("badproxy");
    let _garbage = RawUpstream::start(net.addr(2, 3128), |mut c| {
        let mut buf = [0u8; 512];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
    });
    let _silent = RawUpstream::start(net.addr(3, 1080), |c| {
        std::thread::sleep(Duration::from_secs(10));
        drop(c);
    });
    let (asked_tx, asked_rx) = std::sync::mpsc::channel::<String>();
    let asked_tx = std::sync::Mutex::new(asked_tx);
    let _opening = RawUpstream::start(net.addr(4, 3128), move |c| {
        let mut reader = std::io::BufReader::new(c.try_clone().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let _ = asked_tx.lock().unwrap().send(first.trim_end().to_owned());
        let mut c = c;
        c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\nearly-bytes|")
            .unwrap();
        // Then echo, as the upstream behind the tunnel.
        let mut rest = reader;
        let _ = std::io::copy(&mut rest, &mut c);
    });
    let route = |sni: &str, proxy: String| {
        format!(
            "    - sni: {sni}\n      upstream: up.example.test:9092\n      egress_proxy: {proxy}\n"
        )
    };
    let yaml = format!(
        "gateway:\n  connect_timeout_ms: 1000\n  listeners:\n    - name: kafka\n      address: {gw}\n  routes:\n{}{}{}  admin:\n    address: {admin}\n",
        route("garbage.proxy.test", format!("http://{}", net.addr(2, 3128))),
        route("silent.proxy.test", format!("socks5://u:${{PW}}@{}", net.addr(3, 1080))),
        route("early.proxy.test", format!("http://{}", net.addr(4, 3128))),
        gw = net.addr(1, 9092),
        admin = net.addr(1, 9080),
    );
    std::env::set_var("PW", "pw-from-env");
    let gw = Snigate::start(&scratch.dir, &yaml, net.addr(1, 9080));
    let connect = |sni: &str| {
        let mut s = std::net::TcpStream::connect(net.addr(1, 9092)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let hello = snigate_core::probe::client_hello(sni, [7; 32]);
        s.write_all(&hello).unwrap();
        (s, hello)
    };
    for (sni, reply) in [
        ("garbage.proxy.test", "bad_answer"),
        ("silent.proxy.test", "timeout"),
    ] {
        let (mut s, _) = connect(sni);
        let (got, took) = read_to_close(&mut s);
        assert!(got.is_empty(), "{sni}: the client got {got:?}");
        assert!(
            took < Duration::from_millis(1800),
            "{sni}: closed after {took:?}"
        );
        gw.wait_metric(
            "snigate_connections_total",
            &[("route", sni), ("outcome", "proxy_error")],
            1.0,
        );
        gw.wait_log(&format!("sni={sni} "));
        let log = gw.log_text();
        let line = log
            .lines()
            .find(|l| l.contains(&format!("sni={sni} ")))
            .unwrap();
        assert!(line.contains(&format!("proxy_reply={reply}")), "{line}");
    }
    let (mut s, hello) = connect("early.proxy.test");
    let mut want = b"early-bytes|".to_vec();
    want.extend_from_slice(&hello);
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        got, want,
        "the proxy's early bytes and the echoed hello, in order"
    );
    let asked = asked_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(asked, "CONNECT up.example.test:9092 HTTP/1.1");
    assert!(!gw.log_text().contains("pw-from-env"));
}
