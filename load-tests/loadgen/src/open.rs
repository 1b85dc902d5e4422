//! Open-loop connection rate: new connections start on a fixed schedule of Poisson
//! arrivals at the offered rate, whatever the gateway does, and each one's latency counts
//! from its *scheduled* start (no coordinated omission: a gateway that stalls cannot slow
//! the load down and hide the stall). Each connection connects, sends a ClientHello and
//! the reply command, and times the upstream's first byte back; then it reads the rest and
//! closes.
//!
//! A launcher thread keeps the schedule: it sleeps (with a fine timer slack) until each
//! arrival, starts a non-blocking connect, and passes the socket to the Tokio runtime,
//! which carries the exchange. The launcher never waits for a connection. A connection
//! that would exceed the in-flight bound is not started and counts as failed, never as a
//! fast one; so does one that is not done within [`CONN_TIMEOUT`].

use crate::client::cpu_split;
use crate::upstream::REPLY_LEN;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// How long one connection may take before it counts as failed.
pub const CONN_TIMEOUT: Duration = Duration::from_secs(5);

/// What one open-loop run measured.
#[derive(Debug, Default)]
pub struct OpenResult {
    /// Connections scheduled in the measured window.
    pub scheduled: u64,
    /// Connections completed per second in the measured window.
    pub per_sec: f64,
    /// Connections completed in all, warm-up and late ones included.
    pub completed: u64,
    /// Latency from scheduled start to the first byte back, µs: p50, p99, p99.9.
    pub latency_us: [u64; 3],
    /// Connections of the window that failed, timed out or were never started.
    pub failed: u64,
    /// The gateway's user and system CPU µs per connection completed in the window.
    pub cpu_us_per_conn: Option<(f64, f64)>,
    /// How late the launcher started connections, µs, p99 (a check on the generator).
    pub launch_late_p99_us: u64,
}

/// A tiny xorshift generator: the schedule is reproducible, and needs no dependency.
struct Rng(u64);

impl Rng {
    /// A uniform draw in (0, 1].
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// The arrival offsets of a Poisson process at `rate` per second over `span`.
pub fn schedule(rate: f64, span: Duration, seed: u64) -> Vec<Duration> {
    let mut rng = Rng(seed | 1);
    let mut t = 0.0;
    let mut out = Vec::with_capacity((rate * span.as_secs_f64() * 1.1) as usize + 16);
    loop {
        t += -rng.uniform().ln() / rate;
        if t >= span.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(t));
    }
}

/// A non-blocking connect from `source` to `target`; the socket, once it is connected or
/// connecting.
fn start_connect(source: Option<IpAddr>, target: SocketAddr) -> std::io::Result<OwnedFd> {
    let domain = if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket() returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned it; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let std_sock = socket_addr_raw(target);
    let on: libc::c_int = 1;
    // SAFETY: setsockopt and bind/connect on a socket owned here, with correctly sized
    // arguments.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        if let Some(ip) = source {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let (addr, len) = socket_addr_raw(SocketAddr::new(ip, 0));
            if libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_storage).cast(),
                len,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        let (addr, len) = std_sock;
        if libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_storage).cast(),
            len,
        ) != 0
        {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
    }
    Ok(fd)
}

fn socket_addr_raw(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; the family-specific view written
    // below fits in it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// One connection handed from the launcher to the runtime.
struct Launched {
    fd: OwnedFd,
    due: Instant,
    request: usize,
}

/// The exchange on a connected (or connecting) socket; the first byte's arrival time.
async fn exchange(fd: OwnedFd, request: &[u8]) -> std::io::Result<Instant> {
    let std = std::net::TcpStream::from(fd);
    let mut s = tokio::net::TcpStream::from_std(std)?;
    s.writable().await?;
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    s.write_all(request).await?;
    let mut reply = [0u8; REPLY_LEN];
    let n = s.read(&mut reply).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let first = Instant::now();
    s.read_exact(&mut reply[n..]).await?;
    Ok(first)
}

/// Runs the workload: connections at `rate` per second for `warmup` (not measured) plus
/// `duration`, at most `max_in_flight` at once; `pids` are the gateway's processes.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    targets: Vec<SocketAddr>,
    requests: Vec<Vec<u8>>,
    sources: Vec<IpAddr>,
    rate: f64,
    warmup: Duration,
    duration: Duration,
    max_in_flight: usize,
    pids: Vec<u32>,
) -> OpenResult {
    let arrivals = schedule(rate, warmup + duration, 0x5eed_u64 ^ rate.to_bits());
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<Launched>();
    let launcher = {
        let (in_flight, dropped) = (in_flight.clone(), dropped.clone());
        let targets = targets.clone();
        let n_requests = requests.len().max(1);
        std::thread::spawn(move || {
            // SAFETY: prctl on this thread only changes its timer slack.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_u64) };
            let mut late: Vec<u32> = Vec::with_capacity(arrivals.len());
            for (i, offset) in arrivals.iter().enumerate() {
                let due = start + *offset;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let measured = due >= measure_from;
                if measured {
                    late.push(u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                    if measured {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let k = i % n_requests;
                let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
                match start_connect(source, targets[k % targets.len()]) {
                    Ok(fd) => {
                        in_flight.fetch_add(1, Ordering::Relaxed);
                        if tx
                            .send(Launched {
                                fd,
                                due,
                                request: k,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(_) if measured => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
            late.sort_unstable();
            late.get(late.len().saturating_sub(1) * 99 / 100)
                .copied()
                .unwrap_or(0)
        })
    };

    let requests = Arc::new(requests);
    // Latencies of the window, its failures, completions in the window, all completions.
    let stats = Arc::new(std::sync::Mutex::new((Vec::<u32>::new(), 0u64, 0u64, 0u64)));
    let mut tasks = tokio::task::JoinSet::new();
    let cpu = tokio::spawn({
        let pids = pids.clone();
        async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let before = cpu_split(&pids);
            tokio::time::sleep_until(end.into()).await;
            let after = cpu_split(&pids);
            (after.0 - before.0, after.1 - before.1)
        }
    });
    while let Some(l) = rx.recv().await {
        let (requests, stats, in_flight) = (requests.clone(), stats.clone(), in_flight.clone());
        tasks.spawn(async move {
            let result =
                tokio::time::timeout(CONN_TIMEOUT, exchange(l.fd, &requests[l.request])).await;
            let done = Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
            let in_window = l.due >= measure_from && l.due < end;
            match result {
                Ok(Ok(first)) => {
                    s.3 += 1;
                    if in_window {
                        s.0.push(u32::try_from((first - l.due).as_micros()).unwrap_or(u32::MAX));
                    }
                    if done >= measure_from && done < end {
                        s.2 += 1;
                    }
                }
                _ if in_window => s.1 += 1,
                _ => {}
            }
        });
        // Reap finished tasks as they go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let launch_late_p99_us = u64::from(launcher.join().unwrap_or(0));
    let (cpu_user, cpu_sys) = cpu.await.unwrap_or((0.0, 0.0));
    let (mut latencies, failed, completed_in_window, completed) = {
        let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut s.0), s.1, s.2, s.3)
    };
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        u64::from(latencies[i])
    };
    let failed = failed + dropped.load(Ordering::Relaxed);
    OpenResult {
        scheduled: latencies.len() as u64 + failed,
        per_sec: completed_in_window as f64 / duration.as_secs_f64(),
        completed,
        latency_us: [pct(0.50), pct(0.99), pct(0.999)],
        failed,
        cpu_us_per_conn: (!pids.is_empty() && completed_in_window > 0).then(|| {
            let n = completed_in_window as f64;
            (cpu_user * 1e6 / n, cpu_sys * 1e6 / n)
        }),
        launch_late_p99_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_poisson_at_the_offered_rate() {
        let s = schedule(10_000.0, Duration::from_secs(10), 7);
        // 100,000 expected; a Poisson count's deviation is about 316.
        assert!((98_500..101_500).contains(&s.len()), "{}", s.len());
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        // Exponential gaps: the mean is 100 µs and about 37% exceed it.
        let gaps: Vec<f64> = s.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 1e-4).abs() < 3e-6, "{mean}");
        let over = gaps.iter().filter(|g| **g > 1e-4).count() as f64 / gaps.len() as f64;
        assert!((over - (-1.0f64).exp()).abs() < 0.01, "{over}");
        assert_eq!(
            s,
            schedule(10_000.0, Duration::from_secs(10), 7),
            "reproducible"
        );
    }
}
