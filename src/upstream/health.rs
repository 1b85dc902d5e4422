//! Active and passive health checks of pool servers.
//!
//! The active checks run on `pingora-load-balancing`'s shared [`HealthRegistry`]: one
//! registry per distinct check (its settings and, for `tls`, the SNI it sends), keyed by
//! server address, so every route and listener that uses one address under one check
//! shares one probe and one health value. The probe itself ([`Probe`]) is ours: the crate's
//! `TcpHealthCheck` cannot send a ClientHello with a chosen SNI without a TLS library, and
//! it records neither latency nor the last error, which operators need to see.
//!
//! Passive checks are ours too, as the crate has none: [`ServerHealth::connect_failed`]
//! takes a server down after `fall` real connects fail in a row (HAProxy's
//! `observe layer4`), and the next `rise` passed active checks bring it back.

use crate::metrics;
use async_trait::async_trait;
use pingora_load_balancing::health_check::HealthCheck as Check;
use pingora_load_balancing::{Backend, HealthRegistry};
use snigate_core::pool::{CheckKind, HealthCheck};
use snigate_core::probe::{self, Answer};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Most checks that run at once, across every checker: a slow server never holds up more
/// than this many probes, and a pass over many servers never opens them all at once.
pub const MAX_CONCURRENT_CHECKS: usize = 64;

static CHECK_SLOTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_CHECKS);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What operators see of one server under one check: its last check, its streaks, and
/// the passive mark. Shared by every pool that uses the address under that check.
#[derive(Debug, Default)]
pub struct ServerHealth {
    /// Rise and fall of the check that watches it (0 when unchecked).
    rise: u32,
    fall: u32,
    checked: bool,
    last_ok: AtomicBool,
    last_check_ms: AtomicU64,
    last_latency_us: AtomicU64,
    last_change_ms: AtomicU64,
    last_error: Mutex<String>,
    ok_streak: AtomicU32,
    fail_streak: AtomicU32,
    /// Real connects that failed in a row.
    connect_streak: AtomicU32,
    passive_down: AtomicBool,
    /// The registry's view: the active checks' verdict.
    registry_down: AtomicBool,
    /// The state last reported (logged and counted): true when down.
    reported_down: AtomicBool,
    /// Failed real connects, in all.
    failures: AtomicU64,
    /// How many state changes may still be logged this minute.
    budget: Mutex<LogBudget>,
}

/// At most [`LogBudget::PER_MINUTE`] state-change lines a minute for one server: a flapping
/// server is counted (`snigate_upstream_state_changes_total`) and summed up in one line,
/// not logged change by change.
#[derive(Debug, Default)]
pub struct LogBudget {
    window_start_ms: u64,
    logged: u32,
    suppressed: u32,
}

/// What [`LogBudget::take`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logging {
    /// Log this change.
    Log,
    /// Log this change, after a line saying how many were left out.
    LogAfter(u32),
    /// Leave it out.
    Suppress,
}

impl LogBudget {
    /// Lines per server per minute.
    pub const PER_MINUTE: u32 = 4;

    /// Whether a change at `now_ms` may be logged.
    pub fn take(&mut self, now_ms: u64) -> Logging {
        if now_ms.saturating_sub(self.window_start_ms) >= 60_000 {
            let left_out = std::mem::take(&mut self.suppressed);
            self.window_start_ms = now_ms;
            self.logged = 1;
            return if left_out > 0 {
                Logging::LogAfter(left_out)
            } else {
                Logging::Log
            };
        }
        if self.logged < Self::PER_MINUTE {
            self.logged += 1;
            Logging::Log
        } else {
            self.suppressed += 1;
            Logging::Suppress
        }
    }
}

/// A server's state as `/routes` and the status page show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Serving.
    Up,
    /// Serving, but its last checks failed: `fall` of them in a row take it down.
    GoingDown,
    /// Not serving.
    Down,
    /// Not serving, but its last checks passed: `rise` of them in a row bring it up.
    GoingUp,
    /// An up backup server, waiting for every primary to go down.
    Backup,
}

impl State {
    /// The word used in `/routes` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::GoingDown => "going down",
            State::Down => "down",
            State::GoingUp => "going up",
            State::Backup => "backup",
        }
    }
}

impl ServerHealth {
    /// The state of an unchecked server (it is always up, unless connects fail).
    pub fn unchecked() -> Arc<Self> {
        Arc::new(ServerHealth::default())
    }

    fn checked(hc: &HealthCheck) -> Self {
        let h = ServerHealth {
            rise: hc.rise,
            fall: hc.fall,
            checked: true,
            ..ServerHealth::default()
        };
        h.last_ok.store(true, Ordering::Relaxed);
        h.last_change_ms.store(now_ms(), Ordering::Relaxed);
        h
    }

    /// True unless a passive check took it down.
    pub fn passively_up(&self) -> bool {
        !self.passive_down.load(Ordering::Relaxed)
    }

    /// The state, given whether the registry holds it healthy and whether it is a backup.
    pub fn state(&self, registry_up: bool, backup: bool) -> State {
        let up = registry_up && self.passively_up();
        let (ok, fail) = (
            self.ok_streak.load(Ordering::Relaxed),
            self.fail_streak.load(Ordering::Relaxed),
        );
        match (up, backup) {
            (true, _) if self.checked && fail > 0 => State::GoingDown,
            (true, true) => State::Backup,
            (true, false) => State::Up,
            (false, _) if self.checked && ok > 0 => State::GoingUp,
            (false, _) => State::Down,
        }
    }

    /// Whether the last active check passed, its latency, when it ran and the error.
    pub fn last_check(&self) -> Option<(bool, Duration, u64, String)> {
        let at = self.last_check_ms.load(Ordering::Relaxed);
        (at > 0).then(|| {
            let error = self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            (
                self.last_ok.load(Ordering::Relaxed),
                Duration::from_micros(self.last_latency_us.load(Ordering::Relaxed)),
                at,
                error,
            )
        })
    }

    /// Unix milliseconds of the last state change (0: none since start).
    pub fn last_change_ms(&self) -> u64 {
        self.last_change_ms.load(Ordering::Relaxed)
    }

    /// Failed real connects, in all.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// A real connect succeeded.
    pub fn connect_ok(&self) {
        self.connect_streak.store(0, Ordering::Relaxed);
    }

    /// A real connect failed: `fall` of them in a row take a checked server down at once.
    pub fn connect_failed(&self, server: &str, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let streak = self.connect_streak.fetch_add(1, Ordering::Relaxed) + 1;
        if self.checked && streak >= self.fall && !self.passive_down.swap(true, Ordering::Relaxed) {
            self.ok_streak.store(0, Ordering::Relaxed);
            let why = format!("{streak} connects in a row failed, the last with {error}; it comes back after {} passed checks", self.rise);
            self.settle(server, &why);
        }
    }

    /// Logs and counts a change of the server's state (the active checks' verdict and the
    /// passive mark together), once per change.
    fn settle(&self, server: &str, why: &str) {
        let down = self.registry_down.load(Ordering::Relaxed) || !self.passively_up();
        if self.reported_down.swap(down, Ordering::Relaxed) == down {
            return;
        }
        let state = if down { "down" } else { "up" };
        let now = now_ms();
        self.last_change_ms.store(now, Ordering::Relaxed);
        metrics::STATE_CHANGES
            .with_label_values(&[server, state])
            .inc();
        let logging = self
            .budget
            .lock()
            .map(|mut b| b.take(now))
            .unwrap_or(Logging::Log);
        match logging {
            Logging::Suppress => return,
            Logging::LogAfter(n) => log::warn!(
                "server {server} is flapping: {n} more state changes in the last minute were not logged (snigate_upstream_state_changes_total counts them all)"
            ),
            Logging::Log => {}
        }
        if down {
            log::warn!("server {server} is down: {why}");
        } else {
            log::info!("server {server} is up: {why}");
        }
    }

    /// Records one active check's result.
    fn observe(&self, server: &str, result: &Result<(), String>, took: Duration) {
        self.last_check_ms.store(now_ms(), Ordering::Relaxed);
        self.last_latency_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.last_ok.store(result.is_ok(), Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            match result {
                Ok(()) => e.clear(),
                Err(why) => why.clone_into(&mut e),
            }
        }
        match result {
            Ok(()) => {
                self.fail_streak.store(0, Ordering::Relaxed);
                let ok = self.ok_streak.fetch_add(1, Ordering::Relaxed) + 1;
                if ok >= self.rise && self.passive_down.swap(false, Ordering::Relaxed) {
                    self.connect_streak.store(0, Ordering::Relaxed);
                    self.settle(server, &format!("{ok} checks in a row passed"));
                }
            }
            Err(_) => {
                self.ok_streak.store(0, Ordering::Relaxed);
                self.fail_streak.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One distinct active check: its settings, and the SNI a `tls` check sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckKey {
    /// The settings.
    pub spec: HealthCheck,
    /// The name a `tls` check asks for; `None` for `tcp`.
    pub sni: Option<String>,
}

/// The servers one check watches, by address.
type States = Arc<Mutex<HashMap<SocketAddr, Arc<ServerHealth>>>>;

/// One active check and the registry it keeps.
pub struct Checker {
    /// What it checks, and how.
    pub key: CheckKey,
    /// The crate's registry: the servers every pool using this check contributes.
    pub registry: Arc<HealthRegistry>,
    states: States,
}

/// The registry key of a backend: its address alone, so that two pools that give one
/// server different weights still share its probe.
fn address_key(b: &Backend) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.addr.hash(&mut h);
    h.finish()
}

impl Checker {
    /// A checker with no servers yet.
    pub fn new(key: CheckKey) -> Arc<Self> {
        let registry = Arc::new(HealthRegistry::with_equivalence(address_key));
        let states: States = Arc::default();
        registry.set_health_check(Box::new(Probe {
            key: key.clone(),
            states: states.clone(),
        }));
        Arc::new(Checker {
            key,
            registry,
            states,
        })
    }

    /// The shared state of the server at `addr`.
    pub fn state(&self, addr: SocketAddr) -> Arc<ServerHealth> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states
            .entry(addr)
            .or_insert_with(|| Arc::new(ServerHealth::checked(&self.key.spec)))
            .clone()
    }

    /// Forgets servers that no pool uses any more.
    pub fn prune(&self) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.retain(|_, s| Arc::strong_count(s) > 1);
    }

    /// True when no pool uses this check any more.
    pub fn unused(&self) -> bool {
        self.registry.target_count() == 0
    }

    /// Runs one pass over every server, at most [`MAX_CONCURRENT_CHECKS`] at a time.
    pub async fn pass(&self) {
        self.registry.run_health_check(true).await;
    }
}

/// The probe the registry runs for each server.
struct Probe {
    key: CheckKey,
    states: States,
}

fn inet(b: &Backend) -> Option<SocketAddr> {
    b.addr.as_inet().copied()
}

impl Probe {
    /// The shared state of the server at `addr`, if a pool still uses it.
    fn state_of(&self, addr: SocketAddr) -> Option<Arc<ServerHealth>> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
            .cloned()
    }

    async fn probe(&self, addr: SocketAddr) -> Result<(), String> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let Some(sni) = &self.key.sni else {
            return Ok(());
        };
        let _ = stream.set_nodelay(true);
        let mut seed = [0u8; 32];
        let t = now_ms().to_le_bytes();
        for (i, b) in seed.iter_mut().enumerate() {
            *b = t[i % 8] ^ (i as u8).wrapping_mul(97);
        }
        stream
            .write_all(&probe::client_hello(sni, seed))
            .await
            .map_err(|e| format!("sending the ClientHello: {e}"))?;
        let mut buf = [0u8; 16];
        let mut got = 0;
        loop {
            let n = stream
                .read(&mut buf[got..])
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            if n == 0 {
                return Err("closed without a ServerHello".into());
            }
            got += n;
            match probe::answer(&buf[..got]) {
                Answer::ServerHello => return Ok(()),
                Answer::Alert(code) => {
                    return Err(format!("TLS alert {code} instead of a ServerHello"))
                }
                Answer::NotTls => return Err("answered with something that is not TLS".into()),
                Answer::Incomplete if got < buf.len() => continue,
                Answer::Incomplete => return Err("answered with something that is not TLS".into()),
            }
        }
    }
}

#[async_trait]
impl Check for Probe {
    async fn check(&self, target: &Backend) -> pingora_error::Result<()> {
        let Some(addr) = inet(target) else {
            return Ok(());
        };
        let _slot = CHECK_SLOTS.acquire().await;
        let started = std::time::Instant::now();
        let timeout = self.key.spec.timeout;
        let result = match tokio::time::timeout(timeout, self.probe(addr)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        let took = started.elapsed();
        let kind = self.key.spec.kind.as_str();
        metrics::HEALTH_CHECK_DURATION
            .with_label_values(&[kind, if result.is_ok() { "ok" } else { "failed" }])
            .observe(took.as_secs_f64());
        if let Some(state) = self.state_of(addr) {
            state.observe(&addr.to_string(), &result, took);
        }
        result.map_err(|why| {
            pingora_error::Error::explain(pingora_error::ErrorType::ConnectError, why)
        })
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let Some(addr) = inet(target) else { return };
        let server = addr.to_string();
        let state = self.state_of(addr);
        let why = state
            .as_ref()
            .and_then(|s| s.last_check())
            .map(|(_, _, _, e)| e)
            .unwrap_or_default();
        let check = self.key.spec.kind.as_str();
        let why = if healthy {
            format!("{} {check} checks in a row passed", self.key.spec.rise)
        } else {
            format!(
                "{} {check} checks in a row failed, the last with {why}",
                self.key.spec.fall
            )
        };
        if let Some(state) = state {
            state.registry_down.store(!healthy, Ordering::Relaxed);
            state.settle(&server, &why);
        }
    }

    fn backend_summary(&self, target: &Backend) -> String {
        inet(target).map_or_else(|| "a server".into(), |a| format!("server {a}"))
    }

    fn health_threshold(&self, success: bool) -> usize {
        let spec = &self.key.spec;
        (if success { spec.rise } else { spec.fall }) as usize
    }
}

/// The check for `kind`, sending `sni` when it is a `tls` check.
pub fn check_key(spec: HealthCheck, sni: &str) -> CheckKey {
    CheckKey {
        spec,
        sni: (spec.kind == CheckKind::Tls).then(|| sni.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flapping_server_is_summed_up_not_logged_change_by_change() {
        let mut b = LogBudget::default();
        let start = 1_000_000;
        for i in 0..LogBudget::PER_MINUTE {
            assert_eq!(b.take(start + u64::from(i)), Logging::Log);
        }
        for i in 0..10 {
            assert_eq!(b.take(start + 100 + i), Logging::Suppress);
        }
        assert_eq!(b.take(start + 60_000), Logging::LogAfter(10));
        assert_eq!(b.take(start + 60_001), Logging::Log);
    }

    #[test]
    fn states_follow_the_streaks() {
        let h = ServerHealth::checked(&HealthCheck::default());
        assert_eq!(h.state(true, false), State::Up);
        assert_eq!(h.state(true, true), State::Backup);
        h.observe("s", &Err("refused".into()), Duration::ZERO);
        assert_eq!(h.state(true, false), State::GoingDown);
        assert_eq!(h.state(false, false), State::Down);
        h.observe("s", &Ok(()), Duration::ZERO);
        assert_eq!(h.state(false, false), State::GoingUp);
        assert_eq!(h.state(true, false), State::Up);
    }

    #[test]
    fn fall_failed_connects_take_a_server_down_and_rise_checks_bring_it_back() {
        let h = ServerHealth::checked(&HealthCheck::default());
        h.connect_failed("s", "refused");
        h.connect_failed("s", "refused");
        assert!(h.passively_up(), "two of three");
        h.connect_failed("s", "refused");
        assert!(!h.passively_up());
        assert_eq!(h.failures(), 3);
        h.observe("s", &Ok(()), Duration::ZERO);
        assert!(!h.passively_up(), "one of two");
        h.observe("s", &Ok(()), Duration::ZERO);
        assert!(h.passively_up());
    }
}
