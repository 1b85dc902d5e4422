//! Fewer wake-ups per connection.
//!
//! - [`WhenWoken`]: a future that waits for something rare (the drain's signal, the idle
//!   deadline) inside a connection's `select!`, polled only when its own waker has fired.
//!   `select!` polls every branch each time the task wakes, and a connection's task wakes
//!   several times for its bytes alone. Polling a watch receiver or a timer costs hundreds
//!   of instructions; the gate costs an uncontended lock and a flag. It allocates one
//!   small shared flag per wrapped future.
//! - [`tick_this_thread`]: Tokio wakes its own event loop (an eventfd write, then one more
//!   `epoll_wait`) whenever a new timer is due before every timer already pending on that
//!   thread. On a thread with no timer pending, that is each connection's first timer
//!   (its hello or connect deadline, or its idle deadline). A task that sleeps [`TICK`] at
//!   a time on each single-threaded runtime keeps a timer due within a second, so timers
//!   a second or more away no longer cost those two system calls: the tick itself costs
//!   them about once a second.

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
        // Woken outside the lock: a wake from another thread may make a system call.
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(w) = task {
            w.wake();
        }
    }
}

/// Polls `F` on the first poll and afterwards only once `F`'s own waker has fired; every
/// other poll returns `Pending` at once. Like any future, it must not be polled after it
/// has returned `Ready` (it would then wait forever).
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

/// Starts the tick on the calling thread's runtime, once per thread (see the module's
/// notes). Call it from a task. It does nothing on a multi-threaded runtime (Pingora's
/// with `work_stealing: true`), whose threads share one timer wheel; snigate's default
/// (work stealing off) is one single-threaded runtime per thread.
pub fn tick_this_thread() {
    use tokio::runtime::{Handle, RuntimeFlavor};
    TICKING.with(|ticking| {
        if ticking.get() {
            return;
        }
        ticking.set(true);
        let single =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
        if single {
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

    /// Tasks alive on the current runtime.
    fn alive() -> usize {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    }

    #[tokio::test(start_paused = true)]
    async fn the_tick_starts_once_per_thread_of_a_single_threaded_runtime() {
        let before = alive();
        tick_this_thread();
        tick_this_thread();
        assert_eq!(alive(), before + 1);
        // It keeps ticking.
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(alive(), before + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn no_tick_on_a_multi_threaded_runtime() {
        let before = alive();
        tick_this_thread();
        assert_eq!(alive(), before);
    }
}
