//! What the stable process carries across its own re-exec, as one typed value with one
//! encoding: the descriptors it keeps open (the listening sockets, the control socket,
//! and the connection of the `snigate upgrade` that asked), what it knows of its workers,
//! and the paths it runs with. The old image writes it to a memfd whose number it passes
//! to the new image (`--resume FD`); the new image reads it back and takes everything
//! over. Nothing else crosses the exec: every other descriptor is close-on-exec.

use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// The encoding's version; a new image refuses any other.
pub const FORMAT: u32 = 1;

/// What crosses the exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    /// The encoding's version: [`FORMAT`].
    pub format: u32,
    /// The binary the new image runs, and starts its workers from.
    pub exe: PathBuf,
    /// The config file.
    pub conf: PathBuf,
    /// The pid file (unchanged: the pid is the same).
    pub pid_file: PathBuf,
    /// Where new workers receive the listening sockets.
    pub upgrade_sock: PathBuf,
    /// The control socket's listening descriptor.
    pub control_fd: RawFd,
    /// The listening sockets: Pingora's key (the address) and the descriptor.
    pub listeners: Vec<(String, RawFd)>,
    /// The workers, oldest first.
    pub workers: Vec<CarriedWorker>,
    /// Whether a worker has ever reported ready.
    pub ever_ready: bool,
    /// The connection of the `snigate upgrade` that asked, to report the end to.
    pub reply_fd: Option<RawFd>,
    /// The old image's build, `VERSION COMMIT`, for the log.
    pub from_build: String,
}

/// A worker, as the stable process knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarriedWorker {
    /// Its pid (a child of the stable process, before and after the exec).
    pub pid: u32,
    /// Whether it is the worker that serves now (the others drain).
    pub current: bool,
}

/// Why a hand-off cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// It came from a snigate whose encoding this one does not know.
    #[error("the running snigate hands over in format {found}, and this snigate reads format {FORMAT}; upgrade in two steps, or restart")]
    Format {
        /// The format found.
        found: u32,
    },
    /// It is not a hand-off at all.
    #[error("the hand-off from the running snigate cannot be read: {0}")]
    Json(#[from] serde_json::Error),
    /// Its descriptor cannot be read.
    #[error("cannot read the hand-off from descriptor {fd}: {source}")]
    Io {
        /// The descriptor.
        fd: RawFd,
        /// Why.
        source: std::io::Error,
    },
}

impl Handoff {
    /// The encoded hand-off.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and paths always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and checks the format.
    pub fn decode(bytes: &[u8]) -> Result<Handoff, HandoffError> {
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let v: Version = serde_json::from_slice(bytes)?;
        if v.format != FORMAT {
            return Err(HandoffError::Format { found: v.format });
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Every descriptor it names, each once.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.control_fd];
        fds.extend(self.listeners.iter().map(|(_, fd)| *fd));
        fds.extend(self.reply_fd);
        fds
    }

    /// Writes the encoding into a new memfd (close-on-exec; the caller clears that for
    /// the process that should read it).
    pub fn to_memfd(&self) -> std::io::Result<OwnedFd> {
        let name = c"snigate-handoff";
        // SAFETY: memfd_create takes a C string and flags and returns a new descriptor.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.write_all(&self.encode())?;
        file.rewind()?;
        Ok(OwnedFd::from(file))
    }

    /// Reads the hand-off from descriptor `fd` (from its start, whatever its offset) and
    /// closes it.
    pub fn read_fd(fd: RawFd) -> Result<Handoff, HandoffError> {
        let io = |source| HandoffError::Io { fd, source };
        if fd < 0 {
            return Err(io(std::io::Error::from_raw_os_error(libc::EBADF)));
        }
        // SAFETY: only a snigate exec'ing itself passes --resume, with a memfd it keeps
        // open for this process alone. The borrow lives only for the duplication, which
        // fails (EBADF) before anything is closed if the number is not open.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let owned = borrowed.try_clone_to_owned().map_err(io)?;
        // SAFETY: closing the number passed in, now that a duplicate is held.
        unsafe { libc::close(fd) };
        let mut file = std::fs::File::from(owned);
        let mut bytes = Vec::new();
        file.rewind().map_err(io)?;
        file.read_to_end(&mut bytes).map_err(io)?;
        Handoff::decode(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handoff {
        Handoff {
            format: FORMAT,
            exe: "/usr/local/bin/snigate".into(),
            conf: "/etc/snigate/prod conf.yaml".into(),
            pid_file: "/run/snigate/snigate.pid".into(),
            upgrade_sock: "/run/snigate/upgrade.sock".into(),
            control_fd: 3,
            listeners: vec![("10.0.0.5:9092".into(), 4), ("[::1]:443".into(), 5)],
            workers: vec![
                CarriedWorker {
                    pid: 100,
                    current: false,
                },
                CarriedWorker {
                    pid: 101,
                    current: true,
                },
            ],
            ever_ready: true,
            reply_fd: Some(7),
            from_build: "0.1.0 0123456789ab".into(),
        }
    }

    #[test]
    fn round_trips_through_its_encoding_and_a_memfd() {
        let h = sample();
        assert_eq!(Handoff::decode(&h.encode()).unwrap(), h);
        let fd = h.to_memfd().unwrap();
        // Reading twice from the same file (a preflight, then the exec) starts at 0 both times.
        let dup = fd.try_clone().unwrap();
        use std::os::fd::IntoRawFd;
        assert_eq!(Handoff::read_fd(dup.into_raw_fd()).unwrap(), h);
        assert_eq!(Handoff::read_fd(fd.into_raw_fd()).unwrap(), h);
        assert_eq!(h.fds(), vec![3, 4, 5, 7]);
    }

    #[test]
    fn refuses_another_format_and_garbage_with_what_to_do() {
        let mut h = sample();
        h.format = 2;
        let e = Handoff::decode(&h.encode()).unwrap_err().to_string();
        assert!(e.contains("format 2") && e.contains("restart"), "{e}");
        let e = Handoff::decode(b"not json").unwrap_err().to_string();
        assert!(
            e.starts_with("the hand-off from the running snigate cannot be read"),
            "{e}"
        );
        let mut extra = serde_json::to_value(sample()).unwrap();
        extra["surprise"] = 1.into();
        assert!(Handoff::decode(extra.to_string().as_bytes()).is_err());
        assert!(Handoff::read_fd(-1).is_err());
    }
}
