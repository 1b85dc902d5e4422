//! Logging set-up: `env_logger` to stderr, `info` unless `RUST_LOG` says otherwise.

/// Installs the logger. Call once, before anything logs.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .init();
}
