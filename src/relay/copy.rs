//! The portable relay: copying through user-space buffers, for any pair of streams (the
//! in-process tests use it over in-memory pipes). TCP to TCP uses [`super::splice`].

use super::{Activity, RelayEnd, Side, Totals};
use prometheus::IntCounter;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffer size for each direction, like HAProxy's default bufsize.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// A stream wrapper that counts bytes read and stamps activity.
struct Metered<'a, S> {
    inner: S,
    total: &'a AtomicU64,
    counters: [&'a IntCounter; 2],
    activity: &'a Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.total.fetch_add(n, Ordering::Relaxed);
            for c in self.counters {
                c.inc_by(n);
            }
            self.activity.touch();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Relays between `client` and `upstream` until both close, an error, or `idle` passes
/// with no bytes either way. Counters and `totals` get each chunk as it passes.
pub async fn relay<C, U>(
    client: C,
    upstream: U,
    idle: Duration,
    (up_counters, down_counters): super::splice::Counters<'_>,
    totals: &Totals,
) -> RelayEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut client = Metered {
        inner: client,
        total: &totals.up,
        counters: up_counters,
        activity: &activity,
    };
    let mut upstream = Metered {
        inner: upstream,
        total: &totals.down,
        counters: down_counters,
        activity: &activity,
    };
    {
        let copy = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut upstream,
            BUFFER_SIZE,
            BUFFER_SIZE,
        );
        tokio::select! {
            res = copy => match res {
                Ok(_) => RelayEnd::Closed(Side::Client),
                Err(e) => RelayEnd::from_error(Side::Client, &e),
            },
            _ = activity.idle(idle) => RelayEnd::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn counter() -> IntCounter {
        IntCounter::new("t", "t").unwrap()
    }

    #[tokio::test]
    async fn half_close_keeps_the_other_direction() {
        let (c_app, c_gw) = tokio::io::duplex(1024);
        let (u_gw, u_app) = tokio::io::duplex(1024);
        let (up, down) = (counter(), counter());
        let relay = tokio::spawn(async move {
            let totals = Totals::default();
            let end = relay(
                c_gw,
                u_gw,
                Duration::from_secs(5),
                ([&up, &up], [&down, &down]),
                &totals,
            )
            .await;
            (end, totals)
        });
        let (mut cr, mut cw) = tokio::io::split(c_app);
        let (mut ur, mut uw) = tokio::io::split(u_app);
        cw.write_all(b"request").await.unwrap();
        cw.shutdown().await.unwrap();
        let mut got = Vec::new();
        ur.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request");
        uw.write_all(b"reply after eof").await.unwrap();
        uw.shutdown().await.unwrap();
        let mut back = Vec::new();
        cr.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"reply after eof");
        let (end, totals) = relay.await.unwrap();
        let moved = (totals.up.into_inner(), totals.down.into_inner());
        assert_eq!(moved, (7, 15));
        assert_eq!(end, RelayEnd::Closed(Side::Client));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed() {
        let (_c_app, c_gw) = tokio::io::duplex(1024);
        let (u_gw, _u_app) = tokio::io::duplex(1024);
        let (up, down) = (counter(), counter());
        let totals = Totals::default();
        let end = relay(
            c_gw,
            u_gw,
            Duration::from_secs(60),
            ([&up, &up], [&down, &down]),
            &totals,
        )
        .await;
        assert_eq!(end, RelayEnd::Idle);
    }
}
