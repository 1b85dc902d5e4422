//! Kernel pipes for splice(2), pooled per thread. A relay holds a pipe only while bytes
//! are in flight in its direction and gives it back, empty, as soon as its source has
//! nothing more to read, so an idle connection holds none.
//!
//! Outside root, the kernel charges each pipe's capacity to its user, up to
//! `fs.pipe-user-pages-soft` (16,384 pages, 64 MiB, by default, shared by every process of
//! the same uid); past it, new pipes get 8 KiB. Relaying still works, with more splice
//! calls per megabyte; the first such pipe is logged once with the fix.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes a pipe holds: larger pipes mean fewer splice calls per megabyte, and more of the
/// user's pipe budget (256 KiB: 256 pipes in the default 64 MiB).
pub const PIPE_SIZE: usize = 256 << 10;
/// Empty pipes kept per thread for reuse.
const POOL_CAP: usize = 16;
/// Below this, a pipe was cut down by the user's pipe budget.
const SMALL: usize = 64 << 10;

static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A pipe: bytes written to `write` are read from `read`.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// How many bytes it can hold.
    pub capacity: usize,
}

impl Pipe {
    /// Makes a non-blocking pipe, as large as the kernel allows up to [`PIPE_SIZE`].
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let size = libc::c_int::try_from(PIPE_SIZE).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on a descriptor owned here; a refusal leaves the default size.
        let set = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
        let capacity = if set > 0 {
            usize::try_from(set).unwrap_or(PIPE_SIZE)
        } else {
            // SAFETY: as above.
            let got = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
            usize::try_from(got).unwrap_or(64 * 1024)
        };
        if capacity < SMALL && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!(
                "the kernel gave a {capacity}-byte splice pipe: this user's pipe budget (sysctl fs.pipe-user-pages-soft) is spent; relaying goes on with smaller moves; raise the sysctl for full speed"
            );
        }
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// The end to splice into.
    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// The end to splice out of.
    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// An empty pipe from this thread's pool, or a new one.
pub fn take() -> io::Result<Pipe> {
    match POOL.with(|p| p.borrow_mut().pop()) {
        Some(pipe) => Ok(pipe),
        None => Pipe::new(),
    }
}

/// Gives an empty pipe back for reuse (a full pool closes it).
pub fn give_back(pipe: Pipe) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_CAP {
            pool.push(pipe);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_reused_and_large() {
        let pipe = take().unwrap();
        assert!(pipe.capacity >= 64 * 1024);
        let fd = pipe.read_fd();
        give_back(pipe);
        assert_eq!(take().unwrap().read_fd(), fd, "the pooled pipe comes back");
    }
}
