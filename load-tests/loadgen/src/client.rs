//! Connecting to the proxy under test, spreading connections over several source
//! addresses so that tens of thousands fit in the port range.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `target` from `source` (port chosen at connect time).
pub async fn connect(source: Option<IpAddr>, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on a socket owned here, with a correctly sized int.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Parses `127.0.30.1-8` (or a single address) into the addresses it names.
pub fn sources(spec: &str) -> Result<Vec<IpAddr>, String> {
    let bad = || format!("bad source range `{spec}`; expected A.B.C.D or A.B.C.D-N");
    let (first, last) = match spec.split_once('-') {
        Some((a, n)) => (a, Some(n)),
        None => (spec, None),
    };
    let ip: std::net::Ipv4Addr = first.parse().map_err(|_| bad())?;
    let Some(last) = last else {
        return Ok(vec![IpAddr::V4(ip)]);
    };
    let last: u8 = last.parse().map_err(|_| bad())?;
    let o = ip.octets();
    Ok((o[3]..=last)
        .map(|d| IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], d)))
        .collect())
}

/// CPU time (user + system) that the processes `pids` have used, in seconds.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let (user, system) = cpu_split(pids);
    user + system
}

/// User and system CPU time that the processes `pids` (each with all its threads) have
/// used, in seconds, from /proc/PID/stat.
pub fn cpu_split(pids: &[u32]) -> (f64, f64) {
    // SAFETY: sysconf has no side effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (user, system) = pids
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|stat| {
            let rest = stat.rsplit_once(") ")?.1;
            let f: Vec<&str> = rest.split(' ').collect();
            // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state field.
            Some((
                f.get(11)?.parse::<f64>().ok()?,
                f.get(12)?.parse::<f64>().ok()?,
            ))
        })
        .fold((0.0, 0.0), |(u, s), (du, ds)| (u + du, s + ds));
    let ticks = ticks.max(1.0);
    (user / ticks, system / ticks)
}

/// Resident memory of the processes `pids`, in KiB.
pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}
