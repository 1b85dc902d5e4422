//! A two-namespace lab for discovery tests: `cg` holds the simulated cloud (on its own
//! loopback, 127.88.0.x) and snigate (on 203.0.113.1, a TEST-NET address); `cl` holds the
//! clients (203.0.113.2), whose hosts file points every cloud name at the gateway.
//! [`Lab::with_gateway_ns`] gives snigate a namespace of its own, `gw`, between the two,
//! for a gateway that listens on every address (as a container does); the cloud is then on
//! 192.0.2.x (TEST-NET-1), across a link from `gw`. [`Lab::behind_proxy`] puts a fourth
//! namespace, `px`, between `gw` and the cloud: `gw` reaches only the proxy's address
//! (198.51.100.2, TEST-NET-2), has no route to the cloud and cannot resolve its names;
//! only `px` can. Every namespace, its hosts file and every process in it are removed on
//! drop.

use super::{Proc, Scratch, PATIENCE};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(1);

/// The gateway's address, seen from the client namespace.
pub const GATEWAY_IP: &str = "203.0.113.1";
/// Cloud endpoint addresses inside `cg`.
pub const BOOTSTRAP_IP: &str = "127.88.0.10";
/// Broker front addresses inside `cg`, for brokers 1, 2, 3 (and 4 when added).
pub const BROKER_IPS: [&str; 4] = ["127.88.0.11", "127.88.0.12", "127.88.0.13", "127.88.0.14"];
/// Cloud names.
pub const DOMAIN: &str = "eu-west-2.aws.confluent.test";
/// The bootstrap name.
pub const BOOTSTRAP: &str = "pkc-sim01.eu-west-2.aws.confluent.test";

/// True when running as root; otherwise the caller should skip (or fail under CI).
pub fn root_or_skip(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test} needs root (network namespaces), and CI runs as root"
        );
        eprintln!("skipping {test}: it needs root for network namespaces");
    }
    root
}

/// Broker `i`'s advertised name (`b{i}-pkc-sim01…`).
pub fn broker(i: usize) -> String {
    format!("b{i}-pkc-sim01.{DOMAIN}")
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn")
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where the simulated cloud's endpoints listen.
pub struct CloudIps {
    /// The bootstrap.
    pub bootstrap: &'static str,
    /// Brokers 1, 2, 3.
    pub brokers: [&'static str; 3],
    /// REST.
    pub rest: &'static str,
    /// Schema Registry.
    pub sr: &'static str,
}

/// The cloud on `cg`'s loopback (the gateway shares the namespace).
const LOOPBACK_CLOUD: CloudIps = CloudIps {
    bootstrap: BOOTSTRAP_IP,
    brokers: [BROKER_IPS[0], BROKER_IPS[1], BROKER_IPS[2]],
    rest: "127.88.0.20",
    sr: "127.88.0.21",
};

/// The cloud across a link from the gateway's own namespace.
const LINKED_CLOUD: CloudIps = CloudIps {
    bootstrap: "192.0.2.10",
    brokers: ["192.0.2.11", "192.0.2.12", "192.0.2.13"],
    rest: "192.0.2.20",
    sr: "192.0.2.21",
};

/// The lab.
pub struct Lab {
    /// Cloud namespace (and the gateway's, unless it has its own).
    pub cg: String,
    /// The namespace snigate runs in: `cg`, or one of its own.
    pub gw: String,
    /// Client namespace.
    pub cl: String,
    /// Scratch directory.
    pub scratch: Scratch,
    /// Processes started in the lab.
    pub procs: Vec<Proc>,
    /// Where the cloud listens.
    pub cloud_ips: &'static CloudIps,
    /// The proxy's namespace, in a lab behind a proxy.
    pub px: Option<String>,
}

/// The proxy's address in [`Lab::behind_proxy`], as the gateway reaches it.
pub const PROXY_IP: &str = "198.51.100.2";
/// Where a fourth broker may be added in [`Lab::behind_proxy`].
pub const PROXIED_BROKER_4: &str = "192.0.2.14";

impl Lab {
    /// Creates the namespaces and the link between them; snigate shares `cg` with the cloud.
    pub fn new(tag: &str) -> Lab {
        Lab::build(tag, false, false)
    }

    /// Like [`Lab::new`], with snigate in a namespace of its own between cloud and clients.
    pub fn with_gateway_ns(tag: &str) -> Lab {
        Lab::build(tag, true, false)
    }

    /// Like [`Lab::with_gateway_ns`], with the cloud reachable only through a proxy's
    /// namespace, `px`.
    pub fn behind_proxy(tag: &str) -> Lab {
        Lab::build(tag, true, true)
    }

    fn build(tag: &str, own_gateway: bool, proxy: bool) -> Lab {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let (cg, cl) = (format!("sgcg{id}"), format!("sgcl{id}"));
        let gw = if own_gateway {
            format!("sggw{id}")
        } else {
            cg.clone()
        };
        let lab = Lab {
            cg: cg.clone(),
            gw: gw.clone(),
            cl: cl.clone(),
            scratch: Scratch::new(tag),
            procs: Vec::new(),
            cloud_ips: if own_gateway {
                &LINKED_CLOUD
            } else {
                &LOOPBACK_CLOUD
            },
            px: proxy.then(|| format!("sgpx{id}")),
        };
        for ns in lab.namespaces() {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            std::fs::create_dir_all(format!("/etc/netns/{ns}")).unwrap();
            lab.set_hosts(ns, "127.0.0.1 localhost\n");
        }
        let link = |a: &str, a_ip: &str, b: &str, b_ip: &str, tag: &str| {
            let (va, vb) = (format!("sg{tag}a{id}"), format!("sg{tag}b{id}"));
            must(&[
                "ip", "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns",
                b,
            ]);
            must(&["ip", "-n", a, "addr", "add", a_ip, "dev", &va]);
            must(&["ip", "-n", b, "addr", "add", b_ip, "dev", &vb]);
            must(&["ip", "-n", a, "link", "set", &va, "up"]);
            must(&["ip", "-n", b, "link", "set", &vb, "up"]);
            vb
        };
        link(&gw, &format!("{GATEWAY_IP}/24"), &cl, "203.0.113.2/24", "c");
        if own_gateway {
            let to_gw = match &lab.px {
                Some(px) => {
                    link(&gw, "198.51.100.1/24", px, &format!("{PROXY_IP}/24"), "p");
                    link(px, "192.0.2.1/24", &cg, "192.0.2.2/24", "g")
                }
                None => link(&gw, "192.0.2.1/24", &cg, "192.0.2.2/24", "g"),
            };
            let c = lab.cloud_ips;
            let extra = lab.px.as_ref().map(|_| PROXIED_BROKER_4);
            for ip in [c.bootstrap, c.rest, c.sr]
                .iter()
                .chain(&c.brokers)
                .chain(extra.as_ref())
            {
                must(&[
                    "ip",
                    "-n",
                    &cg,
                    "addr",
                    "add",
                    &format!("{ip}/32"),
                    "dev",
                    &to_gw,
                ]);
            }
        }
        lab
    }

    /// The lab's namespaces, each once.
    fn namespaces(&self) -> Vec<&String> {
        let mut v = vec![&self.cg, &self.cl];
        if self.gw != self.cg {
            v.push(&self.gw);
        }
        v.extend(&self.px);
        v
    }

    /// Writes a namespace's hosts file in place (running processes see the change).
    pub fn set_hosts(&self, ns: &str, text: &str) {
        std::fs::write(format!("/etc/netns/{ns}/hosts"), text).unwrap();
    }

    /// A command run inside `ns`.
    pub fn cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs a command inside `ns` under a time limit; returns (success, stdout+stderr).
    pub fn run(&self, ns: &str, secs: u32, args: &[&str]) -> (bool, String) {
        let mut full = vec!["timeout", "-k", "2"];
        let secs = secs.to_string();
        full.push(&secs);
        full.extend_from_slice(args);
        let out = self.cmd(ns, &full).output().expect("spawn");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Starts a long-running process inside `ns`, logging to `log`.
    pub fn spawn(&mut self, ns: &str, args: &[&str], env: &[(&str, &str)], log: &Path) -> usize {
        let mut c = self.cmd(ns, args);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn");
        self.procs.push(Proc {
            child,
            what: args.join(" "),
        });
        self.procs.len() - 1
    }

    /// Waits up to `limit` for process `idx` to exit; returns whether it succeeded and
    /// what it printed (stdout, then stderr), given the log path it was spawned with.
    pub fn wait_exit(&mut self, idx: usize, log: &Path, limit: Duration) -> (bool, String) {
        let start = Instant::now();
        let status = loop {
            if let Ok(Some(status)) = self.procs[idx].child.try_wait() {
                break Some(status);
            }
            if start.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = format!(
            "{}{}",
            std::fs::read_to_string(log.with_extension("out")).unwrap_or_default(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        match status {
            Some(s) => (s.success(), text),
            None => (false, format!("still running after {limit:?}\n{text}")),
        }
    }

    /// Kills process `idx` and waits for it.
    pub fn stop(&mut self, idx: usize) {
        let child = &mut self.procs[idx].child;
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the snigate started as process `idx` as a service manager does (SIGTERM to
    /// the stable process, which exits once its workers have drained) and waits for it,
    /// so that its listening addresses are free for the next gateway.
    pub fn stop_gateway(&mut self, idx: usize) {
        super::kill("TERM", self.procs[idx].child.id());
        let log = self.path("snigate.log");
        let (ok, out) = self.wait_exit(idx, &log, PATIENCE);
        assert!(ok, "snigate did not stop cleanly on SIGTERM:\n{out}");
    }

    /// Path in the scratch dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    /// Where the cloud keeps ca.pem, hosts and control.sock.
    pub fn cloud_dir(&self) -> PathBuf {
        self.path("cloud")
    }

    /// Starts simcloud with 3 brokers in `cg` and waits until it is ready. Syncs both hosts
    /// files.
    pub fn start_cloud(&mut self) -> usize {
        let dir = self.cloud_dir();
        let _ = std::fs::remove_file(dir.join("ready"));
        let bin = simcloud_bin();
        let c = self.cloud_ips;
        let ips = c.brokers.join(",");
        let dir_s = dir.display().to_string();
        let log = self.path("cloud.log");
        let idx = self.spawn(
            &self.cg.clone(),
            &[
                &bin,
                "serve",
                "--dir",
                &dir_s,
                "--bootstrap-ip",
                c.bootstrap,
                "--broker-ips",
                &ips,
                "--rest-ip",
                c.rest,
                "--sr-ip",
                c.sr,
            ],
            &[
                ("SIMCLOUD_KEY", "sim-key"),
                ("SIMCLOUD_SECRET", "sim-secret"),
                ("RUST_LOG", "info"),
            ],
            &log,
        );
        let start = Instant::now();
        while !dir.join("ready").exists() {
            assert!(
                start.elapsed() < PATIENCE,
                "simcloud never became ready:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.sync_hosts();
        idx
    }

    /// Copies the cloud's names into the gateway's hosts file (their cloud addresses) and
    /// the client's (all at the gateway).
    pub fn sync_hosts(&self) {
        let hosts = std::fs::read_to_string(self.cloud_dir().join("hosts")).unwrap();
        // Behind a proxy, only the proxy resolves the cloud's names.
        let resolver = self.px.as_ref().unwrap_or(&self.gw);
        self.set_hosts(resolver, &format!("127.0.0.1 localhost\n{hosts}"));
        let mut client = String::from("127.0.0.1 localhost\n");
        for line in hosts.lines() {
            if let Some((_, name)) = line.split_once(' ') {
                client.push_str(&format!("{GATEWAY_IP} {name}\n"));
            }
        }
        self.set_hosts(&self.cl, &client);
    }

    /// Sends one control command to the cloud; returns its reply.
    pub fn control(&self, command: &str) -> String {
        use std::io::{BufRead, BufReader, Write};
        let mut s =
            std::os::unix::net::UnixStream::connect(self.cloud_dir().join("control.sock")).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        writeln!(s, "{command}").unwrap();
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        assert!(reply.starts_with("ok"), "{command}: {reply}");
        self.sync_hosts();
        reply
    }

    /// GET from snigate's admin endpoint (127.0.0.1:9080 inside `gw`).
    pub fn admin(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:9080{path}");
        let (_, out) = self.run(&self.gw, 10, &["curl", "-s", "-w", "\n%{http_code}", &url]);
        let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", "0"));
        (code.parse().unwrap_or(0), format!("{body}\n"))
    }

    /// The stable process's `status` line (a path-named Unix socket is reachable from any
    /// network namespace).
    pub fn status(&self) -> String {
        use std::io::{BufRead, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.path("snigate.ctl")).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"status\n").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    /// How many workers the stable process has.
    pub fn workers(&self) -> usize {
        self.status()
            .split(' ')
            .find_map(|f| f.strip_prefix("workers="))
            .map_or(0, |w| w.split(',').filter(|p| !p.is_empty()).count())
    }

    /// Polls until the stable process has one worker left (the old ones have drained).
    pub fn wait_one_worker(&self, limit: Duration) {
        let start = Instant::now();
        while self.workers() > 1 {
            assert!(
                start.elapsed() < limit,
                "the old worker never finished: {}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `snigate upgrade -c conf EXTRA` run in the gateway's namespace, with the lab's
    /// credentials; returns (success, output).
    pub fn upgrade(&self, conf: &Path, extra: &[&str]) -> (bool, String) {
        let conf = conf.display().to_string();
        let mut args = vec![
            "env",
            "SIM_KEY=sim-key",
            super::snigate_bin(),
            "upgrade",
            "-c",
            &conf,
        ];
        args.extend_from_slice(extra);
        self.run(&self.gw, 150, &args)
    }

    /// The gateway's outcome counts that are not zero, for failure messages.
    pub fn outcomes(&self) -> String {
        self.admin("/metrics")
            .1
            .lines()
            .filter(|l| l.starts_with("snigate_connections_total") && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls an admin path until `pred` holds.
    pub fn wait_admin(&self, path: &str, what: &str, pred: impl Fn(u16, &str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let (code, body) = self.admin(path);
            if pred(code, &body) {
                return body;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{what}: {path} answered {code}:\n{body}\nsnigate log:\n{}",
                std::fs::read_to_string(self.path("snigate.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The gateway config for the lab: discovery of cluster `sim`, state file in the
    /// scratch dir; `extra_top` goes before `gateway:`, `extra_gateway` at its end.
    pub fn gateway_conf(&self, secret: &str, extra_top: &str, extra_gateway: &str) -> PathBuf {
        let ca = self.cloud_dir().join("ca.pem");
        let yaml = format!(
            "{extra_top}gateway:
  listeners:
    - name: kafka
      address: {GATEWAY_IP}:9092
    - name: https
      address: {GATEWAY_IP}:443
  admin:
    address: 127.0.0.1:9080
  state_file: {state}
  clusters:
    - name: sim
      bootstrap: {BOOTSTRAP}:9092
      api_key: ${{SIM_KEY}}
      api_secret: {secret}
      rest: https://pkac-sim01.{DOMAIN}
      schema_registry: https://psrc-sim01.{DOMAIN}/
      refresh_interval_secs: 1
      removed_broker_grace_secs: 3
      metadata_timeout_ms: 3000
      librdkafka:
        ssl.ca.location: {ca}
{extra_gateway}",
            state = self.path("state.yaml").display(),
            ca = ca.display(),
        );
        super::write_config(&self.scratch.dir, &yaml)
    }

    /// Starts snigate in `gw` with `conf` (SIM_KEY set), logging to snigate.log, without
    /// waiting for it.
    pub fn spawn_gateway(&mut self, conf: &Path) -> usize {
        self.spawn_gateway_with(conf, &[])
    }

    /// As [`Lab::spawn_gateway`], with more environment variables.
    pub fn spawn_gateway_with(&mut self, conf: &Path, env: &[(&str, &str)]) -> usize {
        let conf = conf.display().to_string();
        let log = self.path("snigate.log");
        let gw = self.gw.clone();
        let mut all = vec![("SIM_KEY", "sim-key"), ("RUST_LOG", "info")];
        all.extend_from_slice(env);
        self.spawn(&gw, &[super::snigate_bin(), "-c", &conf], &all, &log)
    }

    /// Starts snigate as [`Lab::spawn_gateway`] does, and waits for `/ready`.
    pub fn start_gateway(&mut self, conf: &Path) -> usize {
        let idx = self.spawn_gateway(conf);
        self.wait_ready(idx);
        idx
    }

    /// Starts `simcloud ARGS` in the client namespace with the cloud's credentials,
    /// logging to `NAME.log`; returns its index and log path.
    pub fn client(&mut self, name: &str, args: &[&str]) -> (usize, PathBuf) {
        let bin = simcloud_bin();
        let log = self.path(&format!("{name}.log"));
        let mut full = vec![bin.as_str()];
        full.extend_from_slice(args);
        let cl = self.cl.clone();
        let creds = [
            ("SIMCLOUD_KEY", "sim-key"),
            ("SIMCLOUD_SECRET", "sim-secret"),
        ];
        (self.spawn(&cl, &full, &creds, &log), log)
    }

    /// Polls `/ready` until it answers 200; fails at once if process `idx` has exited.
    pub fn wait_ready(&self, idx: usize) {
        let pid = self.procs[idx].child.id();
        let start = Instant::now();
        loop {
            if self.admin("/ready").0 == 200 {
                return;
            }
            let log = || std::fs::read_to_string(self.path("snigate.log")).unwrap_or_default();
            assert!(
                super::pid_alive(pid),
                "{} exited before it became ready; log:\n{}",
                self.procs[idx].what,
                log()
            );
            assert!(start.elapsed() < PATIENCE, "never ready; log:\n{}", log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `openssl s_client` from the client namespace to `name:9092`, verifying the
    /// certificate; true when the handshake verified.
    pub fn tls_verifies(&self, name: &str) -> (bool, String) {
        let ca = self.cloud_dir().join("ca.pem").display().to_string();
        let (_, out) = self.run(
            &self.cl,
            15,
            &[
                "openssl",
                "s_client",
                "-connect",
                &format!("{name}:9092"),
                "-servername",
                name,
                "-verify_return_error",
                "-verify_hostname",
                name,
                "-CAfile",
                &ca,
            ],
        );
        (out.contains("Verify return code: 0 (ok)"), out)
    }

    /// A client TLS session (openssl s_client) to `name:9092` through the gateway, held
    /// open until it ends or is dropped; returns its process index.
    pub fn hold_session(&mut self, name: &str) -> usize {
        let ca = self.cloud_dir().join("ca.pem").display().to_string();
        let cl = self.cl.clone();
        let child = self
            .cmd(
                &cl,
                &[
                    "openssl",
                    "s_client",
                    "-quiet",
                    "-connect",
                    &format!("{name}:9092"),
                    "-servername",
                    name,
                    "-CAfile",
                    &ca,
                ],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_client");
        self.procs.push(Proc {
            child,
            what: format!("held session to {name}"),
        });
        self.procs.len() - 1
    }

    /// `kcat -L` through the gateway from the client namespace.
    pub fn kcat_list(&self) -> (bool, String) {
        let ca = format!(
            "ssl.ca.location={}",
            self.cloud_dir().join("ca.pem").display()
        );
        self.run(
            &self.cl,
            30,
            &[
                "kcat",
                "-b",
                &format!("{BOOTSTRAP}:9092"),
                "-X",
                "security.protocol=SASL_SSL",
                "-X",
                "sasl.mechanisms=PLAIN",
                "-X",
                "sasl.username=sim-key",
                "-X",
                "sasl.password=sim-secret",
                "-X",
                &ca,
                "-m",
                "20",
                "-L",
            ],
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.procs.clear();
        for ns in self.namespaces() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}

/// Real Kafka and TLS clients running through the gateway from the client namespace: a
/// transactional producer (acks=all; transactional so that the mock cluster drops a
/// retried duplicate, as a real cluster does for every idempotent producer), a consumer
/// group of two, and a client opening new TLS connections to broker 0 at a steady rate.
pub struct KafkaLoad {
    messages: usize,
    consumer: (usize, PathBuf),
    producer: (usize, PathBuf),
    churn: (usize, PathBuf),
}

impl KafkaLoad {
    /// Starts the three clients: `messages` produced at `rate` a second, under topic
    /// prefix `prefix`, and `churn_rate` new connections a second for `churn_secs`; waits
    /// until the churn gets through.
    pub fn start(
        lab: &mut Lab,
        prefix: &str,
        messages: usize,
        rate: u32,
        churn_rate: u32,
        churn_secs: u32,
    ) -> KafkaLoad {
        let ca = lab.cloud_dir().join("ca.pem").display().to_string();
        let bootstrap = format!("{BOOTSTRAP}:9092");
        let expect = messages.to_string();
        let kafka = [
            "--bootstrap",
            &bootstrap,
            "--ca",
            &ca,
            "--topic",
            "demo",
            "--prefix",
            prefix,
        ];
        let consume = [
            "consume",
            "--group",
            prefix,
            "--members",
            "2",
            "--expect",
            &expect,
            "--timeout-secs",
            "240",
        ];
        let consumer = lab.client("consumer", &[&consume[..], &kafka[..]].concat());
        let rate = rate.to_string();
        let produce = [
            "produce",
            "--count",
            &expect,
            "--rate",
            &rate,
            "--transactional",
        ];
        let producer = lab.client("producer", &[&produce[..], &kafka[..]].concat());
        let b0 = broker(0);
        let target = format!("{b0}:9092");
        let (churn_rate, churn_secs) = (churn_rate.to_string(), churn_secs.to_string());
        let churn = [
            "churn",
            "--target",
            &target,
            "--name",
            &b0,
            "--ca",
            &ca,
            "--rate",
            &churn_rate,
            "--seconds",
            &churn_secs,
        ];
        let churn = lab.client("churn", &churn);
        let start = Instant::now();
        while super::metric_value(
            &lab.admin("/metrics").1,
            "snigate_connections_total",
            &[("route", &b0), ("outcome", "ok")],
        ) < 100.0
        {
            assert!(
                start.elapsed() < PATIENCE,
                "the churn client never got through"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        KafkaLoad {
            messages,
            consumer,
            producer,
            churn,
        }
    }

    /// Waits for the three clients and checks that no new connection failed and that
    /// every message was produced and consumed exactly once; returns the summary lines.
    pub fn finish(self, lab: &mut Lab) -> String {
        let n = self.messages;
        let (ok, out) = lab.wait_exit(self.churn.0, &self.churn.1, Duration::from_secs(120));
        let churn = out
            .lines()
            .find(|l| l.starts_with("churn:"))
            .unwrap_or("no churn summary")
            .to_owned();
        assert!(
            ok && out.contains(", 0 failed"),
            "new connections were refused or reset:\n{out}\ngateway's outcomes:\n{}",
            lab.outcomes()
        );
        let (ok, out) = lab.wait_exit(self.producer.0, &self.producer.1, Duration::from_secs(180));
        assert!(
            ok && out.contains(&format!("produced {n}")),
            "the producer lost messages:\n{out}"
        );
        let (ok, out) = lab.wait_exit(self.consumer.0, &self.consumer.1, Duration::from_secs(240));
        let consumed = out
            .lines()
            .find(|l| l.starts_with("consumed"))
            .unwrap_or("no consumer summary")
            .to_owned();
        assert!(
            ok && out.contains(&format!(
                "consumed {n} distinct of {n} expected, 0 duplicated, 0 unexpected"
            )),
            "the consumer group did not get every message exactly once:\n{out}"
        );
        format!("{churn}\n{consumed}")
    }
}

/// The simcloud binary, built beside snigate by `cargo build --workspace --bins`.
pub fn simcloud_bin() -> String {
    let snigate = Path::new(super::snigate_bin());
    let bin = snigate.with_file_name("simcloud");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --release --workspace --bins` (tests/run.sh does)",
        bin.display()
    );
    bin.display().to_string()
}
