//! The stable process. `snigate -c FILE` runs this: it binds the listening sockets, writes
//! the pid file, starts a worker (the Pingora server, `snigate --worker`) and hands it a
//! copy of the sockets, and stays alive across config reloads and binary upgrades, which
//! replace the worker under it. A service manager or container runtime tracks this one pid
//! throughout.
//!
//! - `SIGHUP` is passed to the serving worker, which reloads its config in place.
//! - `SIGTERM` and `SIGINT` are passed to every worker; the process exits when they have.
//! - `SIGUSR1` is passed to every worker.
//! - `SIGQUIT` is not an upgrade here: it is logged and ignored.
//! - `snigate upgrade -c FILE` asks, over the control socket, for a full upgrade: the
//!   stable process checks the binary now installed at its path, re-executes it with the
//!   same pid ([`reexec`], carrying [`handoff`]), and the new image replaces the worker.
//!   `--worker-only` replaces only the worker. Either way the new worker loads its config
//!   first and is handed the same listening sockets ([`sockets`]); the serving worker stops
//!   accepting only once the new one is ready. On any failure the serving worker is never
//!   touched.
//! - A worker that dies unexpectedly is replaced, with a growing pause between attempts.
//! - Should the stable process itself die, its worker keeps the sockets for the next one
//!   (`worker::orphan`), which [`sockets::ListenSockets::open`] takes over.

pub mod control;
pub mod daemon;
pub mod handoff;
pub mod reexec;
pub mod sockets;
pub mod upgrade;
mod workers;

use crate::config::Config;
use control::{Reply, Request};
use handoff::Handoff;
use sockets::ListenSockets;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use upgrade::Event;
use workers::{Begin, Setup, Workers};

/// The environment variable that tells a worker where the control socket is.
pub const CONTROL_ENV: &str = "SNIGATE_CONTROL";
/// The environment variable that names the stable process to a worker it starts.
pub const SUPERVISOR_PID_ENV: &str = "SNIGATE_SUPERVISOR_PID";
/// The environment variable that gives a worker the stable process's build.
pub const BUILD_ENV: &str = "SNIGATE_SUPERVISOR_BUILD";

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The path this process was started as: what an upgrade re-executes and new workers
/// start from. Unlike `/proc/self/exe`, it does not follow a symbolic link, so a link moved
/// to a new release (`/usr/bin/snigate -> /opt/snigate-1.3/snigate`) is followed at the
/// next upgrade.
fn own_path() -> std::io::Result<PathBuf> {
    let Some(arg0) = std::env::args_os().next().map(PathBuf::from) else {
        return std::env::current_exe();
    };
    if arg0.components().count() > 1 {
        return std::path::absolute(&arg0);
    }
    // A bare name, found through PATH, as the shell found it.
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(&arg0))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => std::path::absolute(path),
        None => std::env::current_exe(),
    }
}

/// Runs the stable process until its workers have stopped; returns the exit code.
pub fn run(config: Config, conf: PathBuf, daemon: bool) -> i32 {
    let exe = match own_path() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("snigate: cannot find the snigate binary to start workers from: {e}");
            return 1;
        }
    };
    let pid_path = PathBuf::from(&config.server.pid_file);
    let takeover = control::takeover_path(&pid_path);
    let sockets = match ListenSockets::open(&config.gateway, &takeover) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("snigate: {e}");
            return 1;
        }
    };
    // The stable process routes nothing: it keeps no copy of the routes.
    let mut config = config;
    config.gateway.routes = Default::default();
    crate::process::return_free_memory();
    if daemon {
        if let Err(e) = daemon::detach(config.server.error_log.as_deref()) {
            eprintln!("snigate: cannot run as a daemon: {e}");
            return 1;
        }
    }
    let _pid_file = match daemon::PidFile::write(&pid_path) {
        Ok(p) => p,
        Err(e) => {
            log::error!("cannot write the pid file {}: {e}", pid_path.display());
            return 1;
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot start the supervisor's runtime: {e}");
            return 1;
        }
    };
    let control = control::socket_path(&pid_path);
    let upgrade_sock = PathBuf::from(&config.server.upgrade_sock);
    runtime.block_on(async move {
        let listener = match bind_control(&control) {
            Ok(l) => l,
            Err(e) => {
                log::error!("cannot open the control socket {}: {e}", control.display());
                return 1;
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let setup = Setup {
            exe,
            conf,
            control: control.clone(),
            control_fd: listener.as_raw_fd(),
            pid_file: pid_path,
            upgrade_sock,
            sockets,
            events: tx.clone(),
        };
        tokio::spawn(serve_control(listener, tx));
        let code = Workers::new(setup).run(Begin::Fresh, rx).await;
        let _ = std::fs::remove_file(&control);
        code
    })
}

/// The stable process after its re-exec (`--resume FD`): takes over everything the old
/// image carried (see [`handoff`]) and finishes the upgrade; returns the exit code.
pub fn resume(fd: RawFd) -> i32 {
    let handoff = match Handoff::read_fd(fd) {
        Ok(h) => h,
        Err(e) => {
            log::error!("cannot resume after the re-exec: {e}; the workers keep serving until they drain, and hand their sockets to the next `snigate -c FILE`");
            return 1;
        }
    };
    // Whatever was carried must not leak into the workers this image starts.
    for fd in handoff.fds() {
        if let Err(e) = crate::process::set_cloexec_raw(fd, true) {
            log::error!("descriptor {fd} from the hand-off is not open: {e}");
            return 1;
        }
    }
    let _pid_file = daemon::PidFile::adopt(&handoff.pid_file);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot start the supervisor's runtime: {e}");
            return 1;
        }
    };
    let control = control::socket_path(&handoff.pid_file);
    runtime.block_on(async move {
        // SAFETY: the hand-off names the descriptors the old image kept open for this one,
        // each once; nothing else in this process owns them.
        let (listener, reply, sockets) = unsafe {
            let listener = std::os::unix::net::UnixListener::from_raw_fd(handoff.control_fd);
            let reply = handoff.reply_fd.map(|fd| Reply::from_raw_fd(fd));
            let sockets = handoff
                .listeners
                .iter()
                .map(|(key, fd)| (key.clone(), OwnedFd::from_raw_fd(*fd)))
                .collect();
            (listener, reply, ListenSockets::adopt(sockets))
        };
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| UnixListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => {
                log::error!("cannot take the control socket over: {e}");
                return 1;
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let setup = Setup {
            exe: handoff.exe.clone(),
            conf: handoff.conf.clone(),
            control: control.clone(),
            control_fd: listener.as_raw_fd(),
            pid_file: handoff.pid_file.clone(),
            upgrade_sock: handoff.upgrade_sock.clone(),
            sockets,
            events: tx.clone(),
        };
        tokio::spawn(serve_control(listener, tx));
        let begin = Begin::Resumed {
            workers: handoff.workers,
            ever_ready: handoff.ever_ready,
            reply,
            from_build: handoff.from_build,
        };
        let code = Workers::new(setup).run(begin, rx).await;
        let _ = std::fs::remove_file(&control);
        code
    })
}

/// Binds the control socket, owner-only.
fn bind_control(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts control connections and turns each request into an event.
async fn serve_control(listener: UnixListener, tx: mpsc::UnboundedSender<Event>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(control_connection(stream, tx.clone()));
            }
            Err(e) => {
                log::warn!("control socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request; one that needs an answer is passed on with the connection itself.
async fn control_connection(mut stream: UnixStream, tx: mpsc::UnboundedSender<Event>) {
    let mut line = String::new();
    let mut reader = BufReader::new(&mut stream);
    let read = reader.read_line(&mut line);
    match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    drop(reader);
    let request = Request::parse(line.trim_end_matches('\n'));
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let reply = Reply::new(std_stream);
    let Some(request) = request else {
        reply.error("unknown request");
        return;
    };
    let answered = matches!(
        request,
        Request::Upgrade { .. } | Request::Reexec { .. } | Request::Status | Request::Drains
    );
    let _ = tx.send(Event::Control(request, answered.then_some(reply)));
}

/// `snigate upgrade -c FILE`: checks FILE (the caller has), finds the running gateway
/// through FILE's pid file, and asks its stable process to re-execute itself from
/// `binary` (its own path when `None`) and replace its worker; with `worker_only`, to
/// replace only the worker. Returns the exit code: 0 once the new worker serves.
pub fn upgrade(config: &Config, conf: PathBuf, binary: Option<PathBuf>, worker_only: bool) -> i32 {
    let pid_path = PathBuf::from(&config.server.pid_file);
    let pid = match daemon::PidFile::read_live(&pid_path) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("snigate: upgrade: {e}");
            return 1;
        }
    };
    let socket = control::socket_path(&pid_path);
    let from = binary.as_ref().map_or_else(
        || "the binary at its own path".to_owned(),
        |b| b.display().to_string(),
    );
    let request = if worker_only {
        eprintln!("snigate: upgrade: asking the running snigate (pid {pid}) to replace its worker with one from {from}");
        Request::Upgrade {
            exe: binary.clone(),
            conf: conf.clone(),
        }
    } else {
        eprintln!("snigate: upgrade: asking the running snigate (pid {pid}) to re-execute itself from {from}, then replace its worker");
        Request::Reexec {
            exe: binary.clone(),
            conf: conf.clone(),
        }
    };
    let progress = |info: &str| eprintln!("snigate: upgrade: {info}");
    let mut answer = control::ask(&socket, &request, upgrade::UPGRADE_TIMEOUT, progress);
    if !worker_only && answer.as_ref().err().map(String::as_str) == Some("unknown request") {
        // A stable process from before re-exec existed: its worker can still be replaced.
        eprintln!("snigate: upgrade: the running stable process cannot re-execute itself (it predates that); replacing its worker only. Restart the gateway once to run the new stable process");
        let exe = binary.or_else(|| std::env::current_exe().ok());
        let request = Request::Upgrade { exe, conf };
        answer = control::ask(&socket, &request, upgrade::UPGRADE_TIMEOUT, progress);
    }
    match answer {
        Ok(text) => {
            eprintln!("snigate: upgrade: done: {text}");
            0
        }
        Err(text) => {
            eprintln!("snigate: upgrade failed: {text}");
            1
        }
    }
}
