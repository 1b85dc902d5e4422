//! The listening sockets the stable process holds: one per listener, plus the admin
//! endpoint's. The stable process binds them once and hands a copy to each worker it
//! starts (Pingora's `-u` hand-over), so the sockets outlive every worker: a new worker
//! accepts on the very sockets the old one did, and a connection that arrives between
//! two workers waits in the accept queue instead of being refused. They are carried
//! across the stable process's own re-exec, and, should it die, its worker keeps them
//! for the next stable process (see `worker::orphan`).

use crate::listener::{bind, take_over, TAKE_OVER_WAIT};
use snigate_core::config::GatewayConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a new stable process waits for an orphaned worker to release the admin
/// socket, which that worker closes as it stops, after taking the listeners over.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// What can go wrong with the listening sockets.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// An address cannot be bound.
    #[error("{what} cannot listen on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An address is taken, and no orphaned worker handed it over.
    #[error("{what} cannot listen on {addr}: the address is in use, and no orphaned snigate worker handed it over on {}; stop whatever listens there, or free the port", takeover.display())]
    InUse {
        /// Which listener.
        what: String,
        /// Its address.
        addr: SocketAddr,
        /// Where an orphaned worker would have offered it.
        takeover: PathBuf,
    },
}

/// One socket the config asks for.
#[derive(Debug, Clone)]
struct Wanted {
    /// The key in Pingora's table of listening descriptors: the address as text.
    key: String,
    addr: SocketAddr,
    what: String,
    nodelay: bool,
}

fn wanted(gateway: &GatewayConfig) -> Vec<Wanted> {
    let listeners = gateway.listeners.iter().map(|l| Wanted {
        key: l.address.to_string(),
        addr: l.address,
        what: format!("listener `{}`", l.name),
        nodelay: true,
    });
    let admin = gateway.admin.map(|a| Wanted {
        key: a.to_string(),
        addr: a,
        what: "admin".to_owned(),
        nodelay: false,
    });
    listeners.chain(admin).collect()
}

/// The keys of every socket `gateway` asks for.
pub fn keys_for(gateway: &GatewayConfig) -> Vec<String> {
    wanted(gateway).into_iter().map(|w| w.key).collect()
}

/// The held sockets, by key.
#[derive(Debug, Default)]
pub struct ListenSockets {
    held: BTreeMap<String, OwnedFd>,
}

impl ListenSockets {
    /// Binds every socket `gateway` asks for. Where an address is taken, waits a few
    /// seconds for an orphaned worker (whose stable process died) to hand its sockets
    /// over on `takeover`, and uses those.
    pub fn open(gateway: &GatewayConfig, takeover: &Path) -> Result<Self, SocketError> {
        let mut sockets = ListenSockets::default();
        let in_use = sockets.bind_missing(gateway)?;
        let Some(first) = in_use.first() else {
            return Ok(sockets);
        };
        log::warn!(
            "{} cannot listen on {}: the address is in use; waiting a few seconds for an orphaned snigate worker to hand its listening sockets over on {}",
            first.what,
            first.addr,
            takeover.display()
        );
        match take_over(takeover, TAKE_OVER_WAIT) {
            Ok(got) => {
                let keys: Vec<String> = got.iter().map(|(k, _)| k.clone()).collect();
                log::info!(
                    "took the listening sockets over from the orphaned worker: {}",
                    keys.join(", ")
                );
                sockets.adopt_wanted(gateway, got);
            }
            Err(e) => log::warn!("no orphaned worker handed its sockets over: {e}"),
        }
        let deadline = Instant::now() + RELEASE_WAIT;
        loop {
            let left = sockets.bind_missing(gateway)?;
            let Some(w) = left.into_iter().next() else {
                return Ok(sockets);
            };
            if Instant::now() >= deadline {
                return Err(SocketError::InUse {
                    what: w.what,
                    addr: w.addr,
                    takeover: takeover.to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sockets carried across an exec, by key.
    pub fn adopt(carried: Vec<(String, OwnedFd)>) -> Self {
        ListenSockets {
            held: carried.into_iter().collect(),
        }
    }

    /// Keeps those of `got` that `gateway` asks for and does not hold yet; closes the rest.
    fn adopt_wanted(&mut self, gateway: &GatewayConfig, got: Vec<(String, OwnedFd)>) {
        let keys: Vec<String> = wanted(gateway).into_iter().map(|w| w.key).collect();
        for (key, fd) in got {
            if keys.contains(&key) && !self.held.contains_key(&key) {
                self.held.insert(key, fd);
            }
        }
    }

    /// Binds what `gateway` asks for and is not held; returns the wanted sockets whose
    /// address is in use.
    fn bind_missing(&mut self, gateway: &GatewayConfig) -> Result<Vec<Wanted>, SocketError> {
        let mut in_use = Vec::new();
        for w in wanted(gateway) {
            if self.held.contains_key(&w.key) {
                continue;
            }
            match bind(w.addr, w.nodelay) {
                Ok(l) => {
                    self.held.insert(w.key, OwnedFd::from(l));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => in_use.push(w),
                Err(source) => {
                    return Err(SocketError::Bind {
                        what: w.what,
                        addr: w.addr,
                        source,
                    })
                }
            }
        }
        Ok(in_use)
    }

    /// Binds whatever `gateway` asks for that is not held yet (a listener added to the
    /// file before an upgrade); returns the keys it bound, to [`ListenSockets::close`] if
    /// the upgrade fails. On an error, closes what it bound.
    pub fn ensure(&mut self, gateway: &GatewayConfig) -> Result<Vec<String>, SocketError> {
        let before: Vec<String> = self.held.keys().cloned().collect();
        let result = self.bind_missing(gateway);
        let added: Vec<String> = self
            .held
            .keys()
            .filter(|k| !before.contains(k))
            .cloned()
            .collect();
        let failure = match result {
            Ok(in_use) => in_use.into_iter().next().map(|w| SocketError::Bind {
                what: w.what,
                addr: w.addr,
                source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
            }),
            Err(e) => Some(e),
        };
        match failure {
            None => Ok(added),
            Some(e) => {
                self.close(&added);
                Err(e)
            }
        }
    }

    /// Closes the sockets with these keys.
    pub fn close(&mut self, keys: &[String]) {
        for k in keys {
            self.held.remove(k);
        }
    }

    /// Closes the sockets whose keys are not in `keys` (a listener removed from the file);
    /// returns theirs.
    pub fn retain(&mut self, keys: &[String]) -> Vec<String> {
        let dropped: Vec<String> = self
            .held
            .keys()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
        for k in &dropped {
            self.held.remove(k);
        }
        dropped
    }

    /// Closes every socket (the gateway is stopping).
    pub fn close_all(&mut self) {
        self.held.clear();
    }

    /// Duplicates of the sockets, to hand over from another thread.
    pub fn duplicate(&self) -> std::io::Result<Vec<(String, OwnedFd)>> {
        self.held
            .iter()
            .map(|(k, fd)| Ok((k.clone(), fd.try_clone()?)))
            .collect()
    }

    /// The sockets as key and descriptor number, for the exec hand-off.
    pub fn raw(&self) -> Vec<(String, RawFd)> {
        self.held
            .iter()
            .map(|(k, fd)| (k.clone(), fd.as_raw_fd()))
            .collect()
    }

    /// The descriptors themselves, to mark for exec.
    pub fn fds(&self) -> impl Iterator<Item = &OwnedFd> {
        self.held.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(yaml: &str) -> GatewayConfig {
        crate::config::Config::from_yaml(yaml).unwrap().gateway
    }

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn binds_what_the_config_asks_for_and_follows_its_changes() {
        let (a, b, admin) = (free_addr(), free_addr(), free_addr());
        let one = gateway(&format!(
            "gateway:\n  listeners:\n    - name: kafka\n      address: {a}\n  admin:\n    address: {admin}\n"
        ));
        let takeover = std::env::temp_dir().join("snigate-unit-never-used.takeover");
        let mut s = ListenSockets::open(&one, &takeover).unwrap();
        let keys = |s: &ListenSockets| s.raw().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let mut want = vec![a.to_string(), admin.to_string()];
        want.sort();
        assert_eq!(keys(&s), want);
        // The socket accepts: a client connects before any worker exists.
        std::net::TcpStream::connect(a).expect("the held socket listens");

        let two = gateway(&format!(
            "gateway:\n  listeners:\n    - name: https\n      address: {b}\n  admin:\n    address: {admin}\n"
        ));
        assert_eq!(s.ensure(&two).unwrap(), vec![b.to_string()]);
        assert_eq!(s.retain(&keys_for(&two)), vec![a.to_string()]);
        let mut want = vec![b.to_string(), admin.to_string()];
        want.sort();
        assert_eq!(keys(&s), want);
        assert!(
            std::net::TcpListener::bind(a).is_ok(),
            "a dropped listener's port is free again"
        );
        assert_eq!(s.duplicate().unwrap().len(), 2);

        // A listener whose port is taken: nothing it bound on the way stays open.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (c, t) = (free_addr(), taken.local_addr().unwrap());
        let three = gateway(&format!(
            "gateway:\n  listeners:\n    - name: new\n      address: {c}\n    - name: taken\n      address: {t}\n  admin:\n    address: {admin}\n"
        ));
        let e = s.ensure(&three).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("listener `taken` cannot listen on {t}")),
            "{e}"
        );
        assert!(std::net::TcpListener::bind(c).is_ok(), "{c} was left bound");
        s.close_all();
        assert!(s.raw().is_empty());
    }

    #[test]
    fn an_address_held_by_a_stranger_fails_with_what_to_do() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let g = gateway(&format!(
            "gateway:\n  listeners:\n    - name: kafka\n      address: {addr}\n"
        ));
        let dir = tempfile::tempdir().unwrap();
        let e = ListenSockets::open(&g, &dir.path().join("snigate.takeover"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("listener `kafka` cannot listen on {addr}: the address is in use, and no orphaned snigate worker handed it over")),
            "{e}"
        );
    }
}
