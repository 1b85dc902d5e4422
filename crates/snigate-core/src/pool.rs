//! Server pools: a route that sends its connections to a set of servers, the way an HAProxy
//! backend does. This module holds the pool as configured and the pure rules that pick a
//! server; the sockets, the health checks and the counters live in the `snigate` crate.
//!
//! # Selection rules
//! 1. Only *eligible* servers are chosen: healthy (or unchecked), below their
//!    `max_connections`, and not yet tried by this connection.
//! 2. Primary servers first. The backups are used only when no primary is healthy.
//! 3. When no server at all is healthy, every server is tried anyway, primaries then
//!    backups, in the order written (panic routing): a checker's word never refuses
//!    everything.
//! 4. When every healthy server is full, the connection is refused as over limit.
//! 5. A connection tries at most `1 + retries` servers.

use std::time::Duration;

/// How a pool spreads its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Balance {
    /// Each server in turn, in proportion to its weight.
    #[default]
    RoundRobin,
    /// The server with the fewest open connections for its weight.
    LeastConnections,
    /// Consistent hashing on the client's address.
    SourceHash,
}

impl Balance {
    /// The word used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConnections => "least_connections",
            Balance::SourceHash => "source_hash",
        }
    }
}

/// What an active health check does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// A TCP connect.
    #[default]
    Tcp,
    /// A ClientHello with the route's SNI, answered by a ServerHello.
    Tls,
}

impl CheckKind {
    /// The word used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Tls => "tls",
        }
    }
}

/// An active health check's settings. The defaults are HAProxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    /// `tcp` or `tls`.
    pub kind: CheckKind,
    /// Time between two checks of one server.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Passed checks in a row that bring a down server up.
    pub rise: u32,
    /// Failed checks (or failed connects) in a row that take an up server down.
    pub fall: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckKind::Tcp,
            interval: Duration::from_millis(2000),
            timeout: Duration::from_millis(1000),
            rise: 2,
            fall: 3,
        }
    }
}

/// The shortest check interval accepted.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// One server of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Server {
    /// The host (a name or an IP address), as written.
    pub host: String,
    /// The port.
    pub port: u16,
    /// Relative share of new connections (0: only when nothing else is eligible).
    pub weight: u32,
    /// Most connections this pool keeps open to the server at once.
    pub max_connections: Option<u32>,
    /// Used only when every primary server is down.
    pub backup: bool,
}

impl Server {
    /// `host:port`, with an IPv6 host in brackets: the server's name in logs and metrics.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A route's pool as configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pool {
    /// The servers, in the order written.
    pub servers: Vec<Server>,
    /// How connections are spread.
    pub balance: Balance,
    /// Other servers tried after a failed connect.
    pub retries: u32,
    /// The active health check, or `None` for `health_check: none`.
    pub health_check: Option<HealthCheck>,
}

/// Why a pool is refused. Each message says what to fix; the caller adds the key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `servers: []`.
    #[error("the list is empty; give at least one server, or use `upstream:` for one")]
    Empty,
    /// The same address twice.
    #[error("server {address} is listed twice (also at servers[{first}]); list each server once and use `weight` to give it a larger share")]
    Duplicate {
        /// The address.
        address: String,
        /// The index of its first appearance.
        first: usize,
    },
    /// Every weight is 0.
    #[error("every server has weight 0, so none would get a connection; give at least one a weight of 1 or more")]
    AllWeightsZero,
    /// Every server is a backup.
    #[error("every server is `backup: true`; backups only serve when a primary is down, so at least one server must be a primary")]
    AllBackups,
    /// Interval too short.
    #[error("interval_ms {ms} is under the minimum of 100; checks that often cost the servers more than they tell")]
    IntervalTooShort {
        /// The value given.
        ms: u64,
    },
    /// Timeout longer than the interval.
    #[error("timeout_ms {timeout} is longer than interval_ms {interval}; a check must end before the next one starts")]
    TimeoutOverInterval {
        /// The timeout.
        timeout: u64,
        /// The interval.
        interval: u64,
    },
    /// rise or fall of 0.
    #[error("`{0}` must be at least 1")]
    ZeroThreshold(&'static str),
}

impl Pool {
    /// Checks what the YAML types cannot: a non-empty list of distinct servers, some
    /// weight, and at least one primary.
    pub fn check(&self) -> Result<(), PoolError> {
        if self.servers.is_empty() {
            return Err(PoolError::Empty);
        }
        for (i, s) in self.servers.iter().enumerate() {
            if let Some(first) = self.servers[..i]
                .iter()
                .position(|o| o.host.eq_ignore_ascii_case(&s.host) && o.port == s.port)
            {
                return Err(PoolError::Duplicate {
                    address: s.address(),
                    first,
                });
            }
        }
        if self.servers.iter().all(|s| s.weight == 0) {
            return Err(PoolError::AllWeightsZero);
        }
        if self.servers.iter().all(|s| s.backup) {
            return Err(PoolError::AllBackups);
        }
        Ok(())
    }
}

impl HealthCheck {
    /// Checks the interval, the timeout and the thresholds.
    pub fn check(&self) -> Result<(), PoolError> {
        let (interval, timeout) = (
            self.interval.as_millis() as u64,
            self.timeout.as_millis() as u64,
        );
        if self.interval < MIN_CHECK_INTERVAL {
            return Err(PoolError::IntervalTooShort { ms: interval });
        }
        if self.timeout > self.interval {
            return Err(PoolError::TimeoutOverInterval { timeout, interval });
        }
        if self.rise == 0 {
            return Err(PoolError::ZeroThreshold("rise"));
        }
        if self.fall == 0 {
            return Err(PoolError::ZeroThreshold("fall"));
        }
        Ok(())
    }
}

/// One server as the selection sees it at the moment of choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Healthy, or not checked.
    pub up: bool,
    /// Open connections from this pool.
    pub open: usize,
    /// `max_connections`, if any.
    pub max: Option<u32>,
    /// The server's weight.
    pub weight: u32,
    /// A backup server.
    pub backup: bool,
    /// Already tried by this connection.
    pub tried: bool,
}

impl Candidate {
    /// Below its connection limit.
    pub fn has_room(&self) -> bool {
        self.max.is_none_or(|m| self.open < m as usize)
    }

    /// May get this connection now.
    pub fn eligible(&self) -> bool {
        self.up && self.has_room() && !self.tried
    }
}

/// Which tier of the pool a choice comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The primary servers, some of which are up.
    Primary,
    /// The backups: no primary is up.
    Backup,
    /// Nothing is up: every server is tried in order.
    Panic,
}

/// The tier to choose from: primaries while one is up, then backups while one is up, then
/// everything (rules 2 and 3). Servers that are full still count as up here.
pub fn tier(servers: &[Candidate]) -> Tier {
    if servers.iter().any(|s| s.up && !s.backup) {
        Tier::Primary
    } else if servers.iter().any(|s| s.up && s.backup) {
        Tier::Backup
    } else {
        Tier::Panic
    }
}

/// True when `s` belongs to `tier`.
pub fn in_tier(s: &Candidate, tier: Tier) -> bool {
    match tier {
        Tier::Primary => !s.backup,
        Tier::Backup => s.backup,
        Tier::Panic => true,
    }
}

/// The eligible server in `tier` with the fewest open connections for its weight; ties go
/// to the first written. Weight 0 counts as the smallest weight.
pub fn least_connections(servers: &[Candidate], tier: Tier) -> Option<usize> {
    servers
        .iter()
        .enumerate()
        .filter(|(_, s)| in_tier(s, tier) && s.eligible())
        .min_by(|(_, a), (_, b)| {
            // a.open / a.weight < b.open / b.weight, without division.
            let (wa, wb) = (u64::from(a.weight.max(1)), u64::from(b.weight.max(1)));
            (a.open as u64 * wb).cmp(&(b.open as u64 * wa))
        })
        .map(|(i, _)| i)
}

/// In panic routing (rule 3), the first server in written order not yet tried and with room.
pub fn next_in_order(servers: &[Candidate]) -> Option<usize> {
    let order = servers
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.backup)
        .chain(servers.iter().enumerate().filter(|(_, s)| s.backup));
    order
        .filter(|(_, s)| !s.tried && s.has_room())
        .map(|(i, _)| i)
        .next()
}

/// True when every server that is up is full (rule 4): the connection is over limit.
pub fn all_full(servers: &[Candidate], tier: Tier) -> bool {
    let mut members = servers
        .iter()
        .filter(|s| in_tier(s, tier) && (tier == Tier::Panic || s.up));
    members.clone().next().is_some() && members.all(|s| !s.has_room())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(up: bool, open: usize, weight: u32) -> Candidate {
        Candidate {
            up,
            open,
            max: None,
            weight,
            backup: false,
            tried: false,
        }
    }

    fn server(host: &str, backup: bool) -> Server {
        Server {
            host: host.into(),
            port: 443,
            weight: 1,
            max_connections: None,
            backup,
        }
    }

    #[test]
    fn least_connections_weighs_open_counts() {
        let s = [c(true, 4, 1), c(true, 5, 2), c(true, 3, 1)];
        assert_eq!(least_connections(&s, Tier::Primary), Some(1), "5/2 < 3/1");
        let s = [c(true, 2, 1), c(true, 2, 1)];
        assert_eq!(least_connections(&s, Tier::Primary), Some(0), "ties: first");
        let s = [c(false, 0, 1), c(true, 9, 1)];
        assert_eq!(
            least_connections(&s, Tier::Primary),
            Some(1),
            "down skipped"
        );
    }

    #[test]
    fn full_and_tried_servers_are_skipped() {
        let mut s = [c(true, 0, 1), c(true, 1, 1)];
        s[0].tried = true;
        assert_eq!(least_connections(&s, Tier::Primary), Some(1));
        s[1].max = Some(1);
        assert_eq!(least_connections(&s, Tier::Primary), None);
        s[0].tried = false;
        s[0].max = Some(0);
        assert!(all_full(&s, Tier::Primary));
    }

    #[test]
    fn backups_serve_only_when_every_primary_is_down() {
        let mut s = [c(true, 0, 1), c(true, 0, 1)];
        s[1].backup = true;
        assert_eq!(tier(&s), Tier::Primary);
        assert_eq!(least_connections(&s, Tier::Primary), Some(0));
        s[0].up = false;
        assert_eq!(tier(&s), Tier::Backup);
        assert_eq!(least_connections(&s, Tier::Backup), Some(1));
        s[1].up = false;
        assert_eq!(tier(&s), Tier::Panic);
    }

    #[test]
    fn panic_routing_tries_everything_in_written_order() {
        let mut s = [c(false, 0, 1), c(false, 0, 1), c(false, 0, 1)];
        s[0].backup = true;
        assert_eq!(next_in_order(&s), Some(1), "primaries first");
        s[1].tried = true;
        assert_eq!(next_in_order(&s), Some(2));
        s[2].tried = true;
        assert_eq!(next_in_order(&s), Some(0), "then the backups");
        s[0].tried = true;
        assert_eq!(next_in_order(&s), None);
    }

    #[test]
    fn pools_are_checked() {
        let pool = |servers: Vec<Server>| Pool {
            servers,
            balance: Balance::RoundRobin,
            retries: 2,
            health_check: None,
        };
        assert_eq!(pool(vec![]).check(), Err(PoolError::Empty));
        let dup = pool(vec![server("a.test", false), server("A.test", false)]).check();
        assert!(matches!(dup, Err(PoolError::Duplicate { first: 0, .. })));
        assert_eq!(
            pool(vec![server("a.test", true), server("b.test", true)]).check(),
            Err(PoolError::AllBackups)
        );
        let mut zero = pool(vec![server("a.test", false), server("b.test", false)]);
        for s in &mut zero.servers {
            s.weight = 0;
        }
        assert_eq!(zero.check(), Err(PoolError::AllWeightsZero));
        assert_eq!(
            pool(vec![server("a.test", false), server("b.test", true)]).check(),
            Ok(())
        );
    }

    #[test]
    fn health_checks_are_checked() {
        let hc = HealthCheck::default();
        assert_eq!(hc.check(), Ok(()));
        let short = HealthCheck {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(10),
            ..hc
        };
        assert_eq!(short.check(), Err(PoolError::IntervalTooShort { ms: 50 }));
        let long = HealthCheck {
            timeout: Duration::from_millis(3000),
            ..hc
        };
        assert!(matches!(
            long.check(),
            Err(PoolError::TimeoutOverInterval { .. })
        ));
    }
}
