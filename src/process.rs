//! Process plumbing shared by the stable process and its workers: signal streams, pidfds
//! (to learn that another process has exited), descriptor flags, and whether anybody
//! listens on a Unix socket path.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// A stream of `kind` signals, or `None` (logged) if it cannot be had.
pub(crate) fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("cannot listen for {name}: {e}");
            None
        }
    }
}

/// The next signal of a stream; never, without one.
pub(crate) async fn next(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Sends signal `sig` to process `pid`; a pid that does not fit is ignored.
pub fn kill(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: sending a signal has no memory effects on this process.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A pidfd for process `pid` (close-on-exec): readable once that process has exited.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Resolves once the process behind `pidfd` has exited (at once if it already has).
/// Needs a Tokio runtime with I/O enabled.
pub async fn exited(pidfd: OwnedFd) -> io::Result<()> {
    // SAFETY: an OwnedFd stays open, and names the same pidfd, for as long as it is owned.
    let fd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let _ = fd.readable().await?;
    Ok(())
}

/// Reaps child `pid` if it has exited; its exit status, as `waitpid` gives it.
pub fn reap(pid: u32) -> io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ECHILD))?;
    let mut status = 0;
    // SAFETY: waitpid writes the status into a local.
    let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match got {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        _ => Ok(Some(std::process::ExitStatus::from_raw(status))),
    }
}

/// Sets or clears close-on-exec on `fd`.
pub fn set_cloexec(fd: &impl AsRawFd, on: bool) -> io::Result<()> {
    set_cloexec_raw(fd.as_raw_fd(), on)
}

/// [`set_cloexec`] on a raw descriptor (for code between fork and exec).
pub fn set_cloexec_raw(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD changes only the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks (`true`) or unblocks the signals the stable process handles, so that none of
/// them finds a default action in the instant between an exec and the new image's
/// handlers. The mask survives exec; the new image unblocks once it listens.
pub fn block_handled_signals(block: bool) {
    // SAFETY: the set is a local, filled by sigemptyset/sigaddset before use; changing
    // the mask has no memory effects.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGUSR1,
        ] {
            libc::sigaddset(&mut set, sig);
        }
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// A signal the stable process handles: the set [`block_handled_signals`] blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGHUP.
    Hup,
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
    /// SIGQUIT.
    Quit,
    /// SIGUSR1.
    Usr1,
}

/// The stable process's signal streams, one per [`Sig`].
pub struct HandledSignals([(Sig, Option<Signal>); 5]);

impl HandledSignals {
    /// Installs the handlers (a signal that cannot be had is logged, and never comes).
    pub fn listen() -> Self {
        HandledSignals([
            (Sig::Hup, listen(SignalKind::hangup(), "SIGHUP")),
            (Sig::Term, listen(SignalKind::terminate(), "SIGTERM")),
            (Sig::Int, listen(SignalKind::interrupt(), "SIGINT")),
            (Sig::Quit, listen(SignalKind::quit(), "SIGQUIT")),
            (Sig::Usr1, listen(SignalKind::user_defined1(), "SIGUSR1")),
        ])
    }

    /// The next signal.
    pub async fn next(&mut self) -> Sig {
        let [(_, hup), (_, term), (_, int), (_, quit), (_, usr1)] = &mut self.0;
        tokio::select! {
            _ = next(hup) => Sig::Hup,
            _ = next(term) => Sig::Term,
            _ = next(int) => Sig::Int,
            _ = next(quit) => Sig::Quit,
            _ = next(usr1) => Sig::Usr1,
        }
    }

    /// The signals delivered but not yet served, without waiting for more.
    pub async fn pending(&mut self) -> Vec<Sig> {
        // Let the runtime read what the signal handlers wrote, then take it.
        tokio::task::yield_now().await;
        let mut got = Vec::new();
        for (sig, stream) in &mut self.0 {
            while let Ok(()) = tokio::time::timeout(Duration::ZERO, next(stream)).await {
                got.push(*sig);
            }
        }
        got
    }
}

/// True when a process listens on the Unix socket at `path`. Reads /proc/net/unix, so it
/// never connects and never takes the connection meant for someone else.
pub fn someone_listens_on(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let want = path.to_string_lossy();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is "listening".
        fields.len() >= 8
            && fields[7] == want
            && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & 0x1_0000 != 0)
    })
}

/// Gives free memory back to the system: every page the allocator's heaps have handed
/// back (see [`release_thread_heap`]), this thread's own, and the C library's heap, which
/// the C dependencies (librdkafka, OpenSSL) use. Reading a large config leaves tens of MiB
/// free but still counted in the process's RSS until then. (The binary's allocator is
/// mimalloc: see `main.rs`.)
pub fn return_free_memory() {
    // SAFETY: mi_thread_init only sets up this thread's allocator heap (without one,
    // mi_collect returns at once); mi_collect walks the allocator's own heap and arenas;
    // malloc_trim walks the C library's free lists.
    unsafe {
        libmimalloc_sys::mi_thread_init();
        libmimalloc_sys::mi_collect(true);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        libc::malloc_trim(0);
    }
}

/// Hands this thread's empty allocator pages back to the shared arenas, from which
/// [`return_free_memory`], on any thread, gives them back to the system. Only the thread
/// that owns a heap can do this.
pub fn release_thread_heap() {
    // SAFETY: mi_collect(false) walks this thread's own heap and the shared arenas,
    // which mimalloc locks itself.
    unsafe {
        libmimalloc_sys::mi_collect(false);
    }
}

/// Turns transparent huge pages off for this process and the processes it starts: a
/// huge page backs 2 MiB of a heap at the first touch of any of it, which makes a small
/// worker's RSS jump by megabytes, and faulting one in costs a start-up tens of
/// milliseconds. mimalloc is built not to ask for them; this also covers hosts where the
/// kernel gives them unasked (`always`).
pub fn without_huge_pages() {
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integer arguments and only sets a flag.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Runs `work` on this thread at the lowest scheduling class (`SCHED_IDLE`), so that it
/// uses only CPU time that the connections leave; the thread's policy is restored after.
/// Where the class cannot be set, `work` runs at normal priority.
pub fn at_idle_priority<T>(work: impl FnOnce() -> T) -> T {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the calls.
    let lowered = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0;
    let out = work();
    if lowered {
        // SAFETY: as above.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pidfd_turns_readable_when_its_process_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id()).unwrap();
        assert!(reap(child.id()).unwrap().is_none(), "still running");
        tokio::time::timeout(std::time::Duration::from_secs(5), exited(fd))
            .await
            .expect("the pidfd never turned readable")
            .unwrap();
        let status = reap(child.id()).unwrap().expect("reaped");
        assert!(status.success());
        assert!(child.try_wait().is_err(), "already reaped by reap()");
    }

    #[test]
    fn cloexec_is_set_and_cleared() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let flags = || unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags() & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        set_cloexec(&f, false).unwrap();
        assert_eq!(flags() & libc::FD_CLOEXEC, 0);
        set_cloexec(&f, true).unwrap();
        assert_eq!(flags() & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}
