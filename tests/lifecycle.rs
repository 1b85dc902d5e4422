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

/// A config that does not pass `-t`, and a new worker that will not start, each fail a
/// worker-only upgrade with the reason, and the running worker keeps serving, untouched.
#[test]
fn failed_worker_upgrades_leave_the_running_worker_serving() {
    let (net, scratch, _up, gw) = echo_gateway("badupgrade", "", "");
    let worker = gw.worker_pid(&scratch.dir);
    let hello = fixture("openssl.bin");
    let good = std::fs::read_to_string(conf(&scratch)).unwrap();

    std::fs::write(
        conf(&scratch),
        good.replace("sni: openssl.capture.test", "sni: \"*.test\""),
    )
    .unwrap();
    let (ok, out) = upgrade(&conf(&scratch), &["--worker-only"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("gateway.routes[0].sni: invalid wildcard `*.test`"),
        "{out}"
    );
    std::fs::write(conf(&scratch), &good).unwrap();

    let broken = script(
        &scratch.dir,
        "broken-snigate",
        "echo 'this snigate cannot start' >&2\nexit 3",
    );
    let (ok, out) = upgrade(
        &conf(&scratch),
        &["--worker-only", "--binary", broken.to_str().unwrap()],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("exited") && out.contains("untouched"), "{out}");

    let (ok, out) = upgrade(
        &conf(&scratch),
        &["--worker-only", "--binary", "/nonexistent/snigate"],
    );
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

/// An executable shell script `dir/name` with `body`.
fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Installs `bytes` as `dir/bin/snigate` the way a package manager does: written beside it,
/// then renamed over it, so that a process still running the old file runs a deleted one.
fn install(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tmp = bin.join(".snigate.new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = bin.join("snigate");
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The built snigate with every copy of its commit id replaced by `new` (as long): a real
/// binary that reports another build.
fn rebuilt(commit: &str, new: &str) -> Vec<u8> {
    assert_eq!(commit.len(), new.len());
    assert!(
        commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "this test needs snigate built from a git checkout (its commit id is `{commit}`)"
    );
    let mut bytes = std::fs::read(snigate_bin()).unwrap();
    let mut found = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..]
        .windows(commit.len())
        .position(|w| w == commit.as_bytes())
    {
        let at = i + at;
        bytes[at..at + new.len()].copy_from_slice(new.as_bytes());
        found += 1;
        i = at + new.len();
    }
    assert!(found > 0, "commit id {commit} not found in the binary");
    bytes
}

/// Another commit id of the same length: each hex digit moved on by one.
fn other_commit(commit: &str) -> String {
    commit
        .chars()
        .map(|c| match c {
            'f' => '0',
            '9' => 'a',
            c => char::from(c as u8 + 1),
        })
        .collect()
}

/// A `key=value` field of the stable process's status line.
fn field(status: &str, key: &str) -> String {
    status
        .split(' ')
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in `{status}`"))
        .to_owned()
}

/// What /proc says process `pid` runs.
fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap()
        .display()
        .to_string()
}

/// The descriptors process `pid` holds, as /proc shows them.
fn fds_of(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    fds.sort();
    fds
}

/// The descriptors of process `pid` once they hold still (a control connection that just
/// answered may take a moment to close).
fn settled_fds(pid: u32) -> Vec<String> {
    let start = Instant::now();
    loop {
        let before = fds_of(pid);
        std::thread::sleep(Duration::from_millis(200));
        if fds_of(pid) == before {
            return before;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the descriptors of {pid} never settled"
        );
    }
}

/// Polls until the stable process has one worker left (the old ones have drained).
fn wait_one_worker(gw: &Snigate, dir: &Path) {
    let start = Instant::now();
    loop {
        let status = gw.status(dir);
        if !field(&status, "workers").contains(',') {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "old workers never finished: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A gateway started from an installed copy of snigate (`dir/bin/snigate`).
fn installed_gateway(
    tag: &str,
    top: &str,
) -> (Net, Scratch, RawUpstream, Snigate, std::path::PathBuf) {
    let net = Net::new();
    let scratch = Scratch::new(tag);
    let up = RawUpstream::start(net.addr(2, 9092), echo);
    let yaml = format!(
        "{top}gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:9092\n  routes:\n    - sni: openssl.capture.test\n      upstream: ${{ECHO_UPSTREAM:-{up}:9092}}\n  admin:\n    address: {gw}:9080\n",
        gw = net.ip(1),
        up = net.ip(2)
    );
    let conf = write_config(&scratch.dir, &yaml);
    let installed = install(&scratch.dir, &std::fs::read(snigate_bin()).unwrap());
    let gw = Snigate::spawn_from(
        &installed,
        &scratch.dir,
        &conf,
        "snigate.log",
        net.addr(1, 9080),
    );
    gw.wait_ready();
    (net, scratch, up, gw, installed)
}

/// `snigate upgrade` re-executes the stable process from the binary now installed at its
/// path: same pid and pid file, /proc names the installed (not a deleted) file for it and
/// for the new worker, both report the new build, connections flow throughout, and three
/// upgrades in a row leave the stable process with the descriptors it had after the first.
#[test]
fn upgrade_reexecs_the_stable_process_from_the_installed_binary() {
    let (net, scratch, _up, gw, installed) =
        installed_gateway("reexec", "grace_period_seconds: 30\n");
    let dir = &scratch.dir;
    let pid = gw.pid();
    let kafka = net.addr(1, 9092);
    let hello = fixture("openssl.bin");
    let mut long_lived = open(kafka, &hello);
    echo_roundtrip(&mut long_lived, b"before the upgrade");
    let old_commit = field(&gw.status(dir), "commit");
    let new_commit = other_commit(&old_commit);

    install(dir, &rebuilt(&old_commit, &new_commit));
    assert!(exe_of(pid).ends_with(" (deleted)"), "{}", exe_of(pid));
    let (ok, out) = upgrade(&conf(&scratch), &[]);
    assert!(ok, "{out}\nlog:\n{}", gw.log_text());
    assert!(out.contains("re-executed"), "{out}");

    let installed = installed.display().to_string();
    assert!(pid_alive(pid), "the stable process exited");
    assert_eq!(
        exe_of(pid),
        installed,
        "the stable process does not run the installed binary"
    );
    let status = gw.status(dir);
    assert_eq!(field(&status, "supervisor"), pid.to_string());
    assert_eq!(field(&status, "commit"), new_commit, "{status}");
    let worker = gw.worker_pid(dir);
    assert_eq!(
        exe_of(worker),
        installed,
        "the new worker does not run the installed binary"
    );
    let pid_file = std::fs::read_to_string(scratch.path("snigate.pid")).unwrap();
    assert_eq!(pid_file.trim(), pid.to_string(), "the pid file changed");
    for process in ["worker", "supervisor"] {
        gw.wait_metric(
            "snigate_build_info",
            &[("process", process), ("commit", &new_commit)],
            1.0,
        );
    }
    let mut c = open(kafka, &hello);
    echo_roundtrip(&mut c, b"a new connection after the upgrade");
    echo_roundtrip(&mut long_lived, b"the open connection is untouched");
    drop((c, long_lived));

    wait_one_worker(&gw, dir);
    let after_first = settled_fds(pid);
    for round in 2..=3 {
        let (ok, out) = upgrade(&conf(&scratch), &[]);
        assert!(ok, "upgrade {round}: {out}");
        wait_one_worker(&gw, dir);
    }
    let after_third = settled_fds(pid);
    assert_eq!(
        after_first.len(),
        after_third.len(),
        "descriptors leak across re-execs:\nafter the first: {after_first:#?}\nafter the third: {after_third:#?}"
    );
    let log = gw.log_text();
    assert_eq!(log.matches("upgrade done").count(), 3, "{log}");
    assert!(
        !log.contains(" ERROR "),
        "an upgrade logged an error:\n{log}"
    );
}

/// A listener added to the file before an upgrade is bound by the stable process and served
/// by the new worker; one removed from the file is closed once the new worker serves.
#[test]
fn upgrades_open_added_listeners_and_close_removed_ones() {
    let (net, scratch, _up, gw) = echo_gateway("listeners", "", "");
    let hello = fixture("openssl.bin");
    let (first, second) = (net.addr(1, 9092), net.addr(1, 9093));
    let text = std::fs::read_to_string(conf(&scratch)).unwrap();
    let both = text.replace(
        "  routes:",
        &format!("    - name: second\n      address: {second}\n  routes:"),
    );
    std::fs::write(conf(&scratch), &both).unwrap();
    let (ok, out) = upgrade(&conf(&scratch), &["--worker-only"]);
    assert!(ok, "{out}");
    for addr in [first, second] {
        let mut c = open(addr, &hello);
        echo_roundtrip(&mut c, b"both listeners serve");
    }

    let only_second = both.replace(&format!("    - name: kafka\n      address: {first}\n"), "");
    assert_ne!(only_second, both);
    std::fs::write(conf(&scratch), &only_second).unwrap();
    let (ok, out) = upgrade(&conf(&scratch), &[]);
    assert!(ok, "{out}");
    let mut c = open(second, &hello);
    echo_roundtrip(&mut c, b"the remaining listener serves");
    // Once the old worker has drained, nothing holds the removed listener's port.
    wait_one_worker(&gw, &scratch.dir);
    let start = Instant::now();
    while TcpStream::connect(first).is_ok() {
        assert!(
            start.elapsed() < PATIENCE,
            "{first} still accepts:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.wait_log(&format!("closed the listening socket on {first}"));
}

/// Installed as a symbolic link moved to each release, as alternatives and many package
/// layouts do: the upgrade follows the link to the new release.
#[test]
fn upgrade_follows_a_symlink_to_the_new_release() {
    let net = Net::new();
    let scratch = Scratch::new("symlink");
    let dir = &scratch.dir;
    let yaml = format!(
        "gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:9092\n  admin:\n    address: {gw}:9080\n",
        gw = net.ip(1)
    );
    let conf = write_config(dir, &yaml);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let (one, two, link) = (
        bin.join("snigate-1"),
        bin.join("snigate-2"),
        bin.join("snigate"),
    );
    std::fs::copy(snigate_bin(), &one).unwrap();
    std::os::unix::fs::symlink(&one, &link).unwrap();
    let gw = Snigate::spawn_from(&link, dir, &conf, "snigate.log", net.addr(1, 9080));
    gw.wait_ready();
    let pid = gw.pid();
    assert_eq!(exe_of(pid), one.display().to_string());
    let commit = field(&gw.status(dir), "commit");
    std::fs::write(&two, rebuilt(&commit, &other_commit(&commit))).unwrap();
    std::fs::set_permissions(&two, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tmp = bin.join(".snigate.link");
    std::os::unix::fs::symlink(&two, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();

    let (ok, out) = upgrade(&conf, &[]);
    assert!(ok, "{out}");
    assert_eq!(exe_of(pid), two.display().to_string(), "{out}");
    assert_eq!(exe_of(gw.worker_pid(dir)), two.display().to_string());
    assert_eq!(field(&gw.status(dir), "commit"), other_commit(&commit));
}

/// A re-exec to a binary that is missing, not executable, crashes on start, or rejects the
/// config fails `snigate upgrade` with the reason; the stable process (same image) and its
/// worker keep serving, untouched.
#[test]
fn failed_reexecs_leave_the_stable_process_and_worker_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let (net, scratch, _up, gw, installed) = installed_gateway("badreexec", "");
    let dir = &scratch.dir;
    let (pid, worker) = (gw.pid(), gw.worker_pid(dir));
    let exe = exe_of(pid);
    let hello = fixture("openssl.bin");

    let missing = dir.join("bin/missing-snigate");
    let not_executable = dir.join("bin/snigate-0644");
    std::fs::copy(&installed, &not_executable).unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let crashes = script(dir, "crashing-snigate", "kill -SEGV $$");
    // A real snigate, given an environment in which the file's ${ECHO_UPSTREAM} is not an
    // address: it rejects the config, as a newer snigate with stricter rules would.
    let rejects = script(
        dir,
        "stricter-snigate",
        &format!(
            "ECHO_UPSTREAM=not-an-address exec {} \"$@\"",
            installed.display()
        ),
    );
    let cases = [
        (missing, "does not exist"),
        (not_executable, "is not executable"),
        (crashes, "crashed on start (killed by signal 11, SIGSEGV)"),
        (rejects, "rejects the config"),
    ];
    for (binary, reason) in &cases {
        let (ok, out) = upgrade(&conf(&scratch), &["--binary", binary.to_str().unwrap()]);
        assert!(!ok, "{}: the upgrade succeeded:\n{out}", binary.display());
        assert!(
            out.contains(reason) && out.contains("untouched"),
            "{}: want `{reason}`:\n{out}",
            binary.display()
        );
        assert!(pid_alive(pid));
        assert_eq!(exe_of(pid), exe, "the stable process was replaced");
        assert_eq!(gw.worker_pid(dir), worker, "the worker was replaced");
        let mut c = open(net.addr(1, 9092), &hello);
        echo_roundtrip(&mut c, b"still served, untouched");
    }
    let log = gw.log_text();
    assert!(
        log.contains("gateway.routes[0].upstream"),
        "the stricter snigate's reason is not in the log:\n{log}"
    );
    assert!(!log.contains("re-executed"), "{log}");
}

/// A second `snigate upgrade` while one runs is refused with a clear message, and the
/// first one completes.
#[test]
fn a_second_upgrade_while_one_runs_is_refused() {
    let (_net, scratch, _up, gw, installed) = installed_gateway("twoupgrades", "");
    // A new binary that starts only once the test says so: until then, the first upgrade
    // is still checking it.
    let go = scratch.path("go");
    let slow = script(
        &scratch.dir,
        "slow-snigate",
        &format!(
            "while [ ! -e {} ]; do sleep 0.02; done\nexec {} \"$@\"",
            go.display(),
            installed.display()
        ),
    );
    let conf_path = conf(&scratch);
    let first = {
        let (conf_path, slow) = (conf_path.clone(), slow.clone());
        std::thread::spawn(move || upgrade(&conf_path, &["--binary", slow.to_str().unwrap()]))
    };
    gw.wait_log("checking that");
    let (ok, out) = upgrade(&conf_path, &["--worker-only"]);
    assert!(!ok, "{out}");
    assert!(out.contains("an upgrade is already in progress"), "{out}");
    let (ok, out) = upgrade(&conf_path, &[]);
    assert!(
        !ok && out.contains("an upgrade is already in progress"),
        "{out}"
    );
    std::fs::write(&go, "").unwrap();
    let (ok, out) = first.join().unwrap();
    assert!(ok, "the first upgrade failed:\n{out}");
}

/// SIGKILL of the stable process under steady connection churn: its worker notices within
/// a second, stops accepting and drains, holding its listening sockets for the next
/// stable process; a new `snigate -c FILE` started at once takes them over and serves. No
/// churn connection is refused or cut, and established connections finish their
/// transfers byte-exact.
#[test]
fn sigkill_of_the_stable_process_refuses_no_connection() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    const TRANSFER: usize = 6 << 20;
    let (net, scratch, _up, gw) = echo_gateway("supkill", "grace_period_seconds: 30\n", "");
    let kafka = net.addr(1, 9092);
    let hello = fixture("openssl.bin");
    let orphan = gw.worker_pid(&scratch.dir);

    // Established connections, each moving TRANSFER bytes each way over about two seconds.
    let transfers: Vec<_> = (0..3u8)
        .map(|n| {
            let mut s = open(kafka, &hello);
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut r = s.try_clone().unwrap();
            let reader = std::thread::spawn(move || {
                let mut got = vec![0u8; TRANSFER];
                r.read_exact(&mut got).map(|()| got)
            });
            std::thread::spawn(move || {
                let sent: Vec<u8> = (0..TRANSFER).map(|i| (i % 251) as u8 ^ n).collect();
                for chunk in sent.chunks(64 << 10) {
                    s.write_all(chunk).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
                let got = reader.join().unwrap();
                (sent, got)
            })
        })
        .collect();

    // Churn: a new connection every 2 ms, whether or not the earlier ones are done (each
    // on a thread of its own), each a hello echoed back, then closed.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let churn = {
        let (stop, ok, failed, errors) = (stop.clone(), ok.clone(), failed.clone(), errors.clone());
        let hello = hello.clone();
        std::thread::spawn(move || {
            let mut threads = Vec::new();
            while !stop.load(Ordering::Relaxed) && threads.len() < 20_000 {
                let (ok, failed, errors, hello) =
                    (ok.clone(), failed.clone(), errors.clone(), hello.clone());
                threads.push(std::thread::spawn(move || {
                    let attempt = (|| -> std::io::Result<()> {
                        let mut s = TcpStream::connect_timeout(&kafka, Duration::from_secs(5))?;
                        s.set_read_timeout(Some(Duration::from_secs(10)))?;
                        s.write_all(&hello)?;
                        let mut back = vec![0u8; hello.len()];
                        s.read_exact(&mut back)?;
                        if back != hello {
                            return Err(std::io::Error::other("wrong bytes back"));
                        }
                        Ok(())
                    })();
                    match attempt {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }));
                std::thread::sleep(Duration::from_millis(2));
            }
            threads.len()
        })
    };
    let start = Instant::now();
    while ok.load(Ordering::Relaxed) < 50 {
        assert!(start.elapsed() < PATIENCE, "the churn never got through");
        std::thread::sleep(Duration::from_millis(10));
    }

    kill("KILL", gw.pid());
    let killed = Instant::now();
    while !gw.log_text().contains("the stable process (pid") {
        assert!(
            killed.elapsed() < PATIENCE,
            "the worker never noticed:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let noticed = killed.elapsed();
    // What a service manager's restart does: the same command, at once.
    let second = Snigate::spawn(&scratch.dir, &conf(&scratch), &[], "snigate2.log", gw.admin);
    second.wait_ready();
    let served = killed.elapsed();
    let before = ok.load(Ordering::Relaxed);
    let start = Instant::now();
    while ok.load(Ordering::Relaxed) < before + 200 && start.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let started = churn.join().unwrap();
    let start = Instant::now();
    while ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < started {
        assert!(
            start.elapsed() < PATIENCE,
            "churn connections never finished"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let errors = errors.lock().unwrap().clone();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "stable process SIGKILLed: worker noticed after {noticed:?}, new gateway ready after {served:?}; churn: {ok} ok, {failed} refused or failed"
    );
    assert!(
        noticed < Duration::from_secs(1),
        "the worker took {noticed:?} to notice"
    );
    assert_eq!(
        failed,
        0,
        "churn connections failed: {errors:?}\nfirst gateway:\n{}\nsecond gateway:\n{}",
        gw.log_text(),
        second.log_text()
    );
    for t in transfers {
        let (sent, got) = t.join().unwrap();
        let got = got.expect("an established connection was cut");
        assert!(got == sent, "an established connection's bytes differ");
    }
    assert!(second
        .log_text()
        .contains("took the listening sockets over"));
    assert_ne!(second.worker_pid(&scratch.dir), orphan);
    let start = Instant::now();
    while pid_alive(orphan) {
        assert!(
            start.elapsed() < PATIENCE,
            "the orphaned worker never exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// The stable process's answer to `drains`: one `PID:OPEN:SINCE_MS:GRACE_MS` per draining
/// worker.
fn drains(dir: &Path) -> String {
    use std::io::BufRead;
    let mut s = std::os::unix::net::UnixStream::connect(dir.join("snigate.ctl")).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"drains\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line.trim_end().trim_start_matches("ok").trim().to_owned()
}

/// After an upgrade the old worker no longer has the admin listener, yet its drain shows on
/// the new worker's `/metrics` and status page: how many connections it still holds and
/// for how long. A drain that is stuck past its grace period (here: the old worker is
/// stopped with SIGSTOP before it can close its connection) is counted as overdue and
/// marked; once the old worker is gone, so is its drain.
#[test]
fn drains_after_an_upgrade_show_on_the_new_worker_and_overdue_ones_are_marked() {
    let (net, scratch, _up, gw) = echo_gateway("drainview", "grace_period_seconds: 5\n", "");
    let mut held = open(net.addr(1, 9092), &fixture("openssl.bin"));
    echo_roundtrip(&mut held, b"held across the upgrade");
    assert_eq!(gw.metric("snigate_draining_workers", &[]), 0.0);
    assert_eq!(gw.metric("snigate_grace_period_seconds", &[]), 5.0);
    let old = gw.worker_pid(&scratch.dir);
    let (ok, out) = upgrade(&conf(&scratch), &["--worker-only"]);
    assert!(ok, "{out}\nlog:\n{}", gw.log_text());

    // The old worker reports its drain to the stable process; freeze it right then, so
    // that its one connection can never close.
    let start = Instant::now();
    let report = loop {
        let d = drains(&scratch.dir);
        if d.starts_with(&format!("{old}:1:")) {
            break d;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no drain report from worker {old}: `{d}`"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    kill("STOP", old);
    assert!(report.ends_with(":5000"), "grace in ms: {report}");

    gw.wait_metric("snigate_draining_workers", &[], 1.0);
    gw.wait_metric("snigate_draining_connections", &[], 1.0);
    let page = http_get(gw.admin, "/status").unwrap().1;
    let line = format!("worker {old}: 1 connections left");
    assert!(page.contains(&line), "{page}");
    assert!(page.contains("1 draining, holding 1 connections"), "{page}");
    assert!(
        !page.contains("past the grace period"),
        "a drain within its grace period is marked:\n{page}"
    );

    // Past its grace period and still holding the connection: overdue, and marked.
    gw.wait_metric("snigate_drain_overdue_connections", &[], 1.0);
    assert!(gw.metric("snigate_drain_oldest_seconds", &[]) > 5.0);
    let page = http_get(gw.admin, "/status").unwrap().1;
    assert!(page.contains("(past its grace period)"), "{page}");
    let drain_row = page
        .split("<tr")
        .find(|row| row.contains("<th>drain</th>"))
        .unwrap();
    assert!(drain_row.contains("class=\"attention\""), "{drain_row}");

    // Gone: the stable process forgets it, and so do the series.
    kill("KILL", old);
    gw.wait_metric("snigate_draining_workers", &[], 0.0);
    gw.wait_metric("snigate_drain_overdue_connections", &[], 0.0);
    assert_eq!(drains(&scratch.dir), "");
    let page = http_get(gw.admin, "/status").unwrap().1;
    assert!(!page.contains(&line), "{page}");
}
