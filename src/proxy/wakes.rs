//! Fewer wake-ups per connection.
//!
//! - [`WhenWoken`]: a future that waits for something rare (the drain's signal, the idle
//!   deadline) inside a connection's `select!`, polled only when its own waker has fired.
//!   `select!` polls every branch each time the task wakes, and a connection's task wakes
//!   several times for its bytes alone. Polling a watch receiver or a timer each time
//!   costs hundreds of instructions; checking one flag costs a few.
//! - [`tick_this_thread`]: Tokio wakes its own event loop (an eventfd write, then one more
//!   `epoll_wait`) whenever a new timer is due before the loop's next planned wake-up. On
//!   a thread with no timer pending, that is every connection's first timer (the hello or
//!   connect deadline, the idle deadline). A task that sleeps [`TICK`] at a time on each
//!   runtime thread keeps the planned wake-up within a second, so that timers of a second
//!   or more never cost those two system calls.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// What the inner future's waker sets, and the task to wake.
#[derive(Debug)]
struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

/// Polls `F` on the first poll and afterwards only once `F`'s own waker has fired; every
/// other poll returns `Pending` at once.
pub struct WhenWoken<'a, F> {
    inner: Pin<&'a mut F>,
    flag: Arc<Flag>,
}

impl<'a, F: Future> WhenWoken<'a, F> {
    /// Wraps `inner`, pinned by the caller (`std::pin::pin!`).
    pub fn new(inner: Pin<&'a mut F>) -> Self {
        WhenWoken {
            inner,
            flag: Arc::new(Flag {
                woken: AtomicBool::new(true),
                task: Mutex::new(None),
            }),
        }
    }
}

impl<F: Future> Future for WhenWoken<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut task = self
                .flag
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        // Cleared before the inner poll: a wake during it is seen on the next one.
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.flag.clone());
        self.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// How often the tick of [`tick_this_thread`] wakes.
pub const TICK: Duration = Duration::from_secs(1);

thread_local! {
    static TICKING: Cell<bool> = const { Cell::new(false) };
}

/// Starts the tick on the calling runtime thread, once per thread (see the module's
/// notes). Call it from a task that runs on a worker thread's own runtime.
pub fn tick_this_thread() {
    TICKING.with(|ticking| {
        if !ticking.replace(true) {
            tokio::spawn(async {
                loop {
                    tokio::time::sleep(TICK).await;
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts its polls and finishes once told to.
    struct Counted<'a> {
        polls: &'a AtomicUsize,
        told: tokio::sync::oneshot::Receiver<()>,
    }

    impl Future for Counted<'_> {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.told).poll(cx).map(|_| ())
        }
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_when_it_was_woken() {
        let polls = AtomicUsize::new(0);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = pin!(Counted {
            polls: &polls,
            told: rx,
        });
        let mut gated = pin!(WhenWoken::new(inner));
        // Other wakes of the task: a short timer that fires 20 times.
        for _ in 0..20 {
            tokio::select! {
                _ = &mut gated => panic!("finished before it was told to"),
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "only the first poll went through"
        );
        let tell = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(()).unwrap();
        });
        tokio::time::timeout(Duration::from_secs(5), &mut gated)
            .await
            .expect("its own wake reaches the task");
        assert!(polls.load(Ordering::Relaxed) <= 3);
        tell.await.unwrap();
    }
}
