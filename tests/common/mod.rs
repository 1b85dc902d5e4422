//! Shared harness for process-level tests: the built `snigate` binary, real openssl
//! upstreams with their own certificates, and real clients, all on private 127.x addresses.
#![allow(dead_code)]

pub mod lab;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn snigate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_snigate")
}

/// Longest any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

static NEXT_NET: AtomicU8 = AtomicU8::new(1);

/// A private /24 on loopback for one test: 127.X.Y.0 with X from the process id and Y
/// per test, so tests running at once never share an address.
pub struct Net {
    prefix: String,
}

impl Net {
    pub fn new() -> Net {
        let x = 100 + (std::process::id() % 100) as u8;
        let y = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        Net {
            prefix: format!("127.{x}.{y}"),
        }
    }

    /// Host number `n` of this test's network.
    pub fn ip(&self, n: u8) -> String {
        format!("{}.{n}", self.prefix)
    }

    pub fn addr(&self, n: u8, port: u16) -> SocketAddr {
        format!("{}:{port}", self.ip(n)).parse().unwrap()
    }
}

/// A scratch directory removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "snigate-test-{tag}-{}-{}",
            std::process::id(),
            NEXT_NET.load(Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SNIGATE_TEST_KEEP=1 keeps every test's files (logs, configs) for a post-mortem.
        if std::env::var_os("SNIGATE_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a new P-256 private key to `path`.
fn gen_key(path: &Path) {
    run_ok(
        Command::new("openssl")
            .args([
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
            ])
            .arg(path),
    );
}

/// A test CA and leaf certificates it issues, made with the openssl CLI.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca_key = dir.join("ca.key");
        let ca = dir.join("ca.pem");
        gen_key(&ca_key);
        run_ok(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-key"])
                .arg(&ca_key)
                .args(["-days", "2", "-subj", "/CN=snigate test CA", "-out"])
                .arg(&ca),
        );
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate for `name` (CN and SAN); returns (cert, key) paths.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.dir.join(format!("{name}.csr"));
        let cert = self.dir.join(format!("{name}.pem"));
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext, format!("subjectAltName=DNS:{name}\n")).unwrap();
        gen_key(&key);
        run_ok(
            Command::new("openssl")
                .args(["req", "-new", "-key"])
                .arg(&key)
                .args(["-subj", &format!("/CN={name}"), "-out"])
                .arg(&csr),
        );
        run_ok(
            Command::new("openssl")
                .args(["x509", "-req", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(self.ca())
                .arg("-CAkey")
                .arg(self.dir.join("ca.key"))
                .args(["-CAcreateserial", "-days", "2", "-extfile"])
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
        );
        (cert, key)
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub what: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `addr` accepts a TCP connection.
pub fn wait_for_port(addr: SocketAddr) {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "{addr} never accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `openssl s_server -www` on `addr` with a certificate for `name`.
pub fn tls_upstream(pki: &Pki, name: &str, addr: SocketAddr) -> Proc {
    let (cert, key) = pki.issue(name);
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &addr.to_string(),
            "-cert",
        ])
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let p = Proc {
        child,
        what: format!("s_server {name}"),
    };
    wait_for_port(addr);
    p
}

/// Runs `openssl s_client` through the gateway with the given SNI (None: send no SNI),
/// verifying against the test CA. Returns everything it printed.
pub fn s_client(gw: SocketAddr, sni: Option<&str>, ca: &Path) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "openssl", "s_client", "-connect", &gw.to_string()]);
    match sni {
        Some(name) => cmd.args([
            "-servername",
            name,
            "-verify_return_error",
            "-verify_hostname",
            name,
        ]),
        None => cmd.arg("-noservername"),
    };
    cmd.arg("-CAfile").arg(ca).stdin(Stdio::null());
    let out = cmd.output().expect("openssl s_client");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The subject CN that s_client printed for the server certificate, if any.
pub fn peer_cn(s_client_output: &str) -> Option<String> {
    s_client_output.lines().find_map(|l| {
        let rest = l
            .strip_prefix("subject=")
            .or_else(|| l.strip_prefix("depth=0 "))?;
        let cn = rest.split("CN").nth(1)?;
        Some(cn.trim_start_matches([' ', '=']).trim().to_owned())
    })
}

/// A running snigate. It runs in a process group of its own, which is killed on drop:
/// its workers too, including one orphaned by a test that killed the stable process.
pub struct Snigate {
    pub proc: Proc,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Drop for Snigate {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.proc.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

/// Writes `yaml` to `dir/snigate.yaml`, adding pid and upgrade paths in `dir`.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("snigate.yaml");
    let grace = if yaml.contains("grace_period_seconds") {
        ""
    } else {
        "grace_period_seconds: 1\n"
    };
    let full = format!(
        "pid_file: {}\nupgrade_sock: {}\n{grace}graceful_shutdown_timeout_seconds: 1\n{yaml}",
        dir.join("snigate.pid").display(),
        dir.join("upgrade.sock").display()
    );
    std::fs::write(&path, full).unwrap();
    path
}

impl Snigate {
    /// Starts snigate with `yaml` (a `gateway:` section) and waits for `/ready`.
    pub fn start(dir: &Path, yaml: &str, admin: SocketAddr) -> Snigate {
        let conf = write_config(dir, yaml);
        let s = Snigate::spawn(dir, &conf, &[], "snigate.log", admin);
        s.wait_ready();
        s
    }

    /// Starts snigate on an existing config file with extra flags; does not wait.
    pub fn spawn(
        dir: &Path,
        conf: &Path,
        flags: &[&str],
        log_name: &str,
        admin: SocketAddr,
    ) -> Snigate {
        Snigate::spawn_under(&[], dir, conf, flags, log_name, admin)
    }

    /// As [`Snigate::spawn`], run through `prefix` (a command that execs its arguments,
    /// such as `setpriv …`).
    pub fn spawn_under(
        prefix: &[&str],
        dir: &Path,
        conf: &Path,
        flags: &[&str],
        log_name: &str,
        admin: SocketAddr,
    ) -> Snigate {
        Snigate::spawn_under_from(
            prefix,
            Path::new(snigate_bin()),
            dir,
            conf,
            flags,
            log_name,
            admin,
        )
    }

    /// As [`Snigate::spawn_under`], started from the binary at `bin`.
    pub fn spawn_under_from(
        prefix: &[&str],
        bin: &Path,
        dir: &Path,
        conf: &Path,
        flags: &[&str],
        log_name: &str,
        admin: SocketAddr,
    ) -> Snigate {
        let cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        Snigate::spawn_command(cmd, dir, conf, flags, log_name, admin)
    }

    /// As [`Snigate::spawn`], started from the binary at `bin` (an installed copy).
    pub fn spawn_from(
        bin: &Path,
        dir: &Path,
        conf: &Path,
        log_name: &str,
        admin: SocketAddr,
    ) -> Snigate {
        Snigate::spawn_command(Command::new(bin), dir, conf, &[], log_name, admin)
    }

    fn spawn_command(
        mut cmd: Command,
        dir: &Path,
        conf: &Path,
        flags: &[&str],
        log_name: &str,
        admin: SocketAddr,
    ) -> Snigate {
        use std::os::unix::process::CommandExt;
        let log = dir.join(log_name);
        let child = cmd
            .process_group(0)
            .args(flags)
            .arg("-c")
            .arg(conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn snigate");
        Snigate {
            proc: Proc {
                child,
                what: "snigate".into(),
            },
            admin,
            log,
        }
    }

    /// The pid of the stable process (the one started).
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// The stable process's answer to `status`: `supervisor=PID current=PID workers=…`.
    pub fn status(&self, dir: &Path) -> String {
        use std::io::BufRead;
        let mut s = std::os::unix::net::UnixStream::connect(dir.join("snigate.ctl")).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"status\n").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        line.trim().trim_start_matches("ok ").to_owned()
    }

    /// The pid of the worker that serves now.
    pub fn worker_pid(&self, dir: &Path) -> u32 {
        let status = self.status(dir);
        status
            .split(' ')
            .find_map(|f| f.strip_prefix("current="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no current worker in `{status}`"))
    }

    /// Waits until the stable process has exited; returns how long that took.
    pub fn wait_exit(&mut self) -> Duration {
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < PATIENCE,
                "snigate did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends a signal by name (QUIT, TERM, INT, HUP) to this snigate's stable process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.proc.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Polls until the log contains `text`.
    pub fn wait_log(&self, text: &str) {
        let start = Instant::now();
        while !self.log_text().contains(text) {
            assert!(
                start.elapsed() < PATIENCE,
                "log never showed `{text}`:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `/ready` until it answers 200; fails at once if the process has exited.
    pub fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Some((200, _)) = http_get(self.admin, "/ready") {
                return;
            }
            assert!(
                pid_alive(self.proc.child.id()),
                "snigate exited before it became ready; log:\n{}",
                self.log_text()
            );
            assert!(
                start.elapsed() < PATIENCE,
                "snigate never became ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").expect("metrics").1
    }

    /// Value of one series, matched by name and all the given label pairs.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    /// Polls until the metric reaches `want` (connections are counted when they close).
    pub fn wait_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let start = Instant::now();
        loop {
            let got = self.metric(name, labels);
            if got == want {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{name}{labels:?} is {got}, want {want}; metrics:\n{}\nlog:\n{}",
                self.metrics(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `snigate upgrade -c conf` with extra arguments; returns (success, output).
pub fn upgrade(conf: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(snigate_bin())
        .arg("upgrade")
        .arg("-c")
        .arg(conf)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run snigate upgrade");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Sends signal `name` to process `pid`.
pub fn kill(name: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// True while process `pid` runs: it exists and is not a zombie waiting to be reaped.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Parses one series' value out of Prometheus text; 0 when absent.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A minimal HTTP/1.1 GET that reads exactly Content-Length bytes; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_len, body_len) = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())?;
            break (end + 4, len);
        }
    };
    while buf.len() < head_len + body_len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]).into_owned();
    Some((status, body))
}

/// A plain TCP upstream that records what it receives. Each connection is handled by
/// `handler` on its own thread.
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl RawUpstream {
    pub fn start<F>(addr: SocketAddr, handler: F) -> RawUpstream
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr).expect("bind raw upstream");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let h = handler.clone();
                std::thread::spawn(move || h(conn));
            }
        });
        RawUpstream { addr, accepted }
    }
}

/// Echoes everything back, then closes its sending side after the client's EOF.
pub fn echo(mut conn: TcpStream) {
    let mut r = conn.try_clone().unwrap();
    let _ = std::io::copy(&mut r, &mut conn);
    let _ = conn.shutdown(Shutdown::Write);
}

/// A real ClientHello captured from a client, from tests/fixtures/clienthello.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clienthello")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
