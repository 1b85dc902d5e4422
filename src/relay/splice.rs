//! The TCP relay: splice(2) moves bytes from one socket into a kernel pipe and from the
//! pipe into the other socket, so they are never copied through user space. Each
//! direction takes a pipe from the per-thread pool when its source becomes readable and
//! gives it back, empty, once the source has nothing more; an idle connection holds no
//! pipe and no buffer.

use super::pipe::{self, Pipe};
use super::{Activity, RelayEnd, Side, Totals};
use crate::proxy::wakes::WhenWoken;
use prometheus::IntCounter;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call; null offsets make
    // the kernel use (and move) each file's own position, as sockets and pipes require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// One direction: what it counts into, and which side is its source.
struct Meter<'a> {
    counters: [&'a IntCounter; 2],
    total: &'a AtomicU64,
    activity: &'a Activity,
    source: Side,
}

impl Meter<'_> {
    fn add(&self, n: usize) {
        let n = n as u64;
        for c in self.counters {
            c.inc_by(n);
        }
        self.total.fetch_add(n, Ordering::Relaxed);
        self.activity.touch();
    }

    /// The side a write error belongs to: this direction's destination.
    fn destination(&self) -> Side {
        match self.source {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }
}

/// One direction's state: the pipe it holds while bytes are in flight, how many of them
/// are still to be written, and whether its source has ended.
#[derive(Default)]
struct Direction {
    pipe: Option<Pipe>,
    pending: usize,
    ended: bool,
}

impl Direction {
    /// Moves bytes from `src` to `dst` until `src` would block (Pending) or has ended and
    /// everything is written (Ready). Readiness is polled on the sockets themselves, so a
    /// waiting direction costs no allocation.
    /// When `other_ended`, the other direction is over too and both sockets are about to
    /// be closed (which sends the FIN), so an ending source needs no shutdown(2).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &TcpStream,
        dst: &TcpStream,
        meter: &Meter<'_>,
        other_ended: bool,
    ) -> Poll<Result<(), (Side, io::Error)>> {
        let (src_side, dst_side) = (meter.source, meter.destination());
        loop {
            if self.pending > 0 {
                let Some(pipe) = &self.pipe else {
                    let e = io::Error::other("bytes pending without a pipe");
                    return Poll::Ready(Err((dst_side, e)));
                };
                let (from, to) = (pipe.read_fd(), dst.as_raw_fd());
                match dst.try_io(Interest::WRITABLE, || splice(from, to, self.pending)) {
                    Ok(0) => return Poll::Ready(Err((dst_side, io::ErrorKind::WriteZero.into()))),
                    Ok(n) => self.pending -= n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        ready!(dst.poll_write_ready(cx)).map_err(|e| (dst_side, e))?;
                    }
                    Err(e) => return Poll::Ready(Err((dst_side, e))),
                }
                continue;
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            if self.pipe.is_none() {
                ready!(src.poll_read_ready(cx)).map_err(|e| (src_side, e))?;
                self.pipe = Some(pipe::take().map_err(|e| (src_side, e))?);
            }
            let Some(pipe) = &self.pipe else {
                continue;
            };
            let (from, to, len) = (src.as_raw_fd(), pipe.write_fd(), pipe.capacity);
            match src.try_io(Interest::READABLE, || splice(from, to, len)) {
                Ok(0) => {
                    self.ended = true;
                    self.give_back();
                    if !other_ended {
                        // SAFETY: shutdown on an open socket; it only ends the write side.
                        unsafe {
                            libc::shutdown(dst.as_raw_fd(), libc::SHUT_WR);
                        }
                    }
                }
                Ok(n) => {
                    meter.add(n);
                    self.pending = n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing more to read: the pipe is empty, give it back.
                    self.give_back();
                    ready!(src.poll_read_ready(cx)).map_err(|e| (src_side, e))?;
                }
                Err(e) => return Poll::Ready(Err((src_side, e))),
            }
        }
    }

    /// Returns the (empty) pipe to the pool. A pipe that still holds bytes when the relay
    /// fails is dropped with the direction instead.
    fn give_back(&mut self) {
        if let Some(p) = self.pipe.take() {
            pipe::give_back(p);
        }
    }
}

/// Counters for each direction: `up` (client to upstream) and `down`, each a pair such as
/// the listener's and the route's.
pub type Counters<'a> = ([&'a IntCounter; 2], [&'a IntCounter; 2]);

/// Relays between two TCP sockets until both directions have ended, either fails, or
/// `idle` passes with no bytes either way. Counters and `totals` get each chunk.
pub async fn relay_tcp(
    client: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
    (up_counters, down_counters): Counters<'_>,
    totals: &Totals,
) -> RelayEnd {
    let activity = Activity::new();
    let up_meter = Meter {
        counters: up_counters,
        total: &totals.up,
        activity: &activity,
        source: Side::Client,
    };
    let down_meter = Meter {
        counters: down_counters,
        total: &totals.down,
        activity: &activity,
        source: Side::Upstream,
    };
    let (mut up, mut down) = (Direction::default(), Direction::default());
    let (mut up_done, mut down_done) = (false, false);
    let mut first = None;
    let both = std::future::poll_fn(|cx| {
        if !up_done {
            match up.poll(cx, client, upstream, &up_meter, down_done) {
                Poll::Ready(Ok(())) => {
                    up_done = true;
                    first.get_or_insert(Side::Client);
                }
                Poll::Ready(Err((side, e))) => return Poll::Ready(RelayEnd::from_error(side, &e)),
                Poll::Pending => {}
            }
        }
        if !down_done {
            match down.poll(cx, upstream, client, &down_meter, up_done) {
                Poll::Ready(Ok(())) => {
                    down_done = true;
                    first.get_or_insert(Side::Upstream);
                }
                Poll::Ready(Err((side, e))) => return Poll::Ready(RelayEnd::from_error(side, &e)),
                Poll::Pending => {}
            }
        }
        match first {
            Some(side) if up_done && down_done => Poll::Ready(RelayEnd::Closed(side)),
            _ => Poll::Pending,
        }
    });
    let idle = std::pin::pin!(activity.idle(idle));
    let idle = WhenWoken::new(idle);
    tokio::select! {
        end = both => end,
        _ = idle => RelayEnd::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    fn counter() -> IntCounter {
        IntCounter::new("t", "t").unwrap()
    }

    #[tokio::test]
    async fn bytes_pass_both_ways_with_half_close() {
        let (mut client_app, client_gw) = pair().await;
        let (upstream_gw, mut upstream_app) = pair().await;
        let (up, down) = (counter(), counter());
        let relay = tokio::spawn(async move {
            let totals = Totals::default();
            let end = relay_tcp(
                &client_gw,
                &upstream_gw,
                Duration::from_secs(5),
                ([&up, &up], [&down, &down]),
                &totals,
            )
            .await;
            (end, totals.up.into_inner(), totals.down.into_inner())
        });
        let big = vec![7u8; 3 << 20];
        client_app.write_all(&big).await.unwrap();
        client_app.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream_app.read_to_end(&mut got).await.unwrap();
        assert!(got == big, "3 MiB arrive intact and the EOF follows");
        upstream_app.write_all(b"reply after eof").await.unwrap();
        upstream_app.shutdown().await.unwrap();
        let mut back = Vec::new();
        client_app.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"reply after eof");
        let (end, up_bytes, down_bytes) = relay.await.unwrap();
        assert_eq!(
            (end, up_bytes, down_bytes),
            (RelayEnd::Closed(Side::Client), 3 << 20, 15)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed() {
        let (_client_app, client_gw) = pair().await;
        let (upstream_gw, _upstream_app) = pair().await;
        let (up, down) = (counter(), counter());
        let totals = Totals::default();
        let end = relay_tcp(
            &client_gw,
            &upstream_gw,
            Duration::from_secs(60),
            ([&up, &up], [&down, &down]),
            &totals,
        )
        .await;
        assert_eq!(end, RelayEnd::Idle);
    }
}
