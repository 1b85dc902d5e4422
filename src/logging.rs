//! Logging set-up: `env_logger` to stderr, `info` unless `RUST_LOG` says otherwise.
//!
//! One of Pingora's messages is re-levelled: a process that waits for listening sockets to
//! be handed over (a new worker, or a new stable process taking them from an orphaned
//! worker) logs "No incoming socket transfer" as an ERROR each second it waits, which is
//! every normal start's first second. Here it is an INFO line saying what happens.

use log::{Level, Log, Metadata, Record};

/// The Pingora module that hands listening sockets between processes.
const TRANSFER_TARGET: &str = "pingora_core::server::transfer_fd";

struct Relevel {
    inner: env_logger::Logger,
}

fn is_transfer_wait(record: &Record<'_>) -> bool {
    record.level() == Level::Error
        && record.target().starts_with(TRANSFER_TARGET)
        && record
            .args()
            .to_string()
            .starts_with("No incoming socket transfer")
}

impl Log for Relevel {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if is_transfer_wait(record) {
            let waiting = Record::builder()
                .level(Level::Info)
                .target(record.target())
                .args(format_args!(
                    "waiting for the listening sockets to be handed over"
                ))
                .build();
            if self.inner.enabled(waiting.metadata()) {
                self.inner.log(&waiting);
            }
            return;
        }
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger. Call once, before anything logs.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    // pingora-load-balancing logs each health flip itself; snigate logs it once, with the
    // passive checks' verdict and the reason (see `upstream::health`).
    let inner = env_logger::Builder::new()
        .filter_module("pingora_load_balancing", log::LevelFilter::Error)
        .parse_env(env)
        .format_timestamp_millis()
        .build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Relevel { inner })).is_ok() {
        log::set_max_level(max);
    }
}
