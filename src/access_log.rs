//! Where access lines go: the `snigate::access` log target (stderr, beside Pingora's own
//! lines), a file of their own, reopened on SIGUSR1 for logrotate, or, with the path `-`,
//! standard output with nothing but the lines (what a container's log collector reads).
//! Lines are text or JSON (`gateway.access_log`).
//!
//! Refusals that come in floods (`over_limit`, `denied_source`) are written at most
//! [`BURST`] per second each; the rest are counted, and one line a second says how many
//! were not written.

use snigate_core::config::{AccessLogConfig, LogFormat};
use snigate_core::outcome::Outcome;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The log target of access lines when they go to the logger.
pub const TARGET: &str = "snigate::access";
/// Lines a second written for each flood-prone outcome.
pub const BURST: u32 = 10;

/// One line's fields, in the order they are written.
pub type Fields<'a> = [(&'a str, Value<'a>)];

/// A field's value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Text; `None` is written as `-` (text) or `null` (JSON).
    Text(Option<&'a str>),
    /// A number.
    Number(u64),
}

/// The path that stands for standard output.
pub const STDOUT: &str = "-";

struct FileSink {
    path: PathBuf,
    writer: std::io::BufWriter<Box<dyn Write + Send>>,
}

/// Counts the lines of one flood-prone outcome in the current second.
#[derive(Default)]
struct Window {
    started: Option<Instant>,
    written: u32,
    suppressed: u64,
}

/// The access log.
pub struct AccessLog {
    format: LogFormat,
    file: Option<Mutex<FileSink>>,
    floods: Mutex<[Window; 2]>,
}

static LOG: OnceLock<AccessLog> = OnceLock::new();

fn is_stdout(path: &std::path::Path) -> bool {
    path.as_os_str() == STDOUT
}

fn open(path: &PathBuf) -> std::io::Result<std::io::BufWriter<Box<dyn Write + Send>>> {
    let out: Box<dyn Write + Send> = if is_stdout(path) {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )
    };
    Ok(std::io::BufWriter::new(out))
}

/// Sets the access log up from the config; returns an error if its file cannot be opened.
pub fn init(config: &AccessLogConfig) -> std::io::Result<()> {
    let file = match &config.path {
        Some(path) => Some(Mutex::new(FileSink {
            writer: open(path)?,
            path: path.clone(),
        })),
        None => None,
    };
    let _ = LOG.set(AccessLog {
        format: config.format,
        file,
        floods: Mutex::default(),
    });
    Ok(())
}

fn log() -> &'static AccessLog {
    LOG.get_or_init(|| AccessLog {
        format: LogFormat::Text,
        file: None,
        floods: Mutex::default(),
    })
}

fn flood_index(outcome: Outcome) -> Option<usize> {
    match outcome {
        Outcome::OverLimit => Some(0),
        Outcome::DeniedSource => Some(1),
        _ => None,
    }
}

/// Renders one line.
pub fn render(format: LogFormat, fields: &Fields<'_>) -> String {
    let mut out = String::with_capacity(256);
    match format {
        LogFormat::Text => {
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push('=');
                match v {
                    Value::Text(Some(t)) if *k == "detail" => out.push_str(&format!("{t:?}")),
                    Value::Text(Some(t)) => out.push_str(t),
                    Value::Text(None) => out.push('-'),
                    Value::Number(n) => out.push_str(&n.to_string()),
                }
            }
        }
        LogFormat::Json => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(&mut out, k);
                out.push(':');
                match v {
                    Value::Text(Some(t)) => json_string(&mut out, t),
                    Value::Text(None) => out.push_str("null"),
                    Value::Number(n) => out.push_str(&n.to_string()),
                }
            }
            out.push('}');
        }
    }
    out
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// True when a line at `level` would be written anywhere.
pub fn enabled(level: log::Level) -> bool {
    log().file.is_some() || log::log_enabled!(target: TARGET, level)
}

fn emit(level: log::Level, line: &str) {
    let l = log();
    match &l.file {
        Some(file) => {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = writeln!(f.writer, "{line}") {
                log::warn!("cannot write the access log {}: {e}", f.path.display());
            }
        }
        None => log::log!(target: TARGET, level, "{line}"),
    }
}

fn level(outcome: Outcome) -> log::Level {
    // TCP health checks and port probes stay out of the access log.
    if outcome == Outcome::Empty {
        log::Level::Debug
    } else {
        log::Level::Info
    }
}

/// True when a connection that ended with `outcome` gets a line: check before building one.
pub fn wants(outcome: Outcome) -> bool {
    if outcome == Outcome::Empty && log().file.is_some() {
        return false;
    }
    enabled(level(outcome))
}

/// Writes one connection's line (a flood of refusals is thinned to [`BURST`] a second).
pub fn write(outcome: Outcome, fields: &Fields<'_>) {
    let level = level(outcome);
    if let Some(i) = flood_index(outcome) {
        let now = Instant::now();
        let mut floods = log().floods.lock().unwrap_or_else(|p| p.into_inner());
        let w = &mut floods[i];
        if w.started
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            let suppressed = std::mem::take(&mut w.suppressed);
            *w = Window {
                started: Some(now),
                written: 0,
                suppressed: 0,
            };
            if suppressed > 0 {
                summary(outcome, suppressed);
            }
        }
        if w.written >= BURST {
            w.suppressed += 1;
            return;
        }
        w.written += 1;
    }
    emit(level, &render(log().format, fields));
}

fn summary(outcome: Outcome, suppressed: u64) {
    let fields = [
        ("outcome", Value::Text(Some(outcome.as_str()))),
        ("suppressed", Value::Number(suppressed)),
        (
            "detail",
            Value::Text(Some(
                "lines not written in the last second, to bound a flood",
            )),
        ),
    ];
    emit(log::Level::Warn, &render(log().format, &fields));
}

/// Writes pending summaries and flushes the file. Called every second and at exit.
pub fn flush() {
    let now = Instant::now();
    let pending: Vec<(Outcome, u64)> = {
        let mut floods = log().floods.lock().unwrap_or_else(|p| p.into_inner());
        [Outcome::OverLimit, Outcome::DeniedSource]
            .into_iter()
            .zip(floods.iter_mut())
            .filter(|(_, w)| {
                w.suppressed > 0
                    && w.started
                        .is_some_and(|s| now.duration_since(s) >= Duration::from_secs(1))
            })
            .map(|(o, w)| {
                let n = std::mem::take(&mut w.suppressed);
                *w = Window::default();
                (o, n)
            })
            .collect()
    };
    for (o, n) in pending {
        summary(o, n);
    }
    if let Some(file) = &log().file {
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.writer.flush() {
            log::warn!("cannot write the access log {}: {e}", f.path.display());
        }
    }
}

/// Reopens the file (after logrotate moved it away): SIGUSR1.
pub fn reopen() {
    let Some(file) = &log().file else {
        return;
    };
    let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
    let _ = f.writer.flush();
    if is_stdout(&f.path) {
        return;
    }
    match open(&f.path) {
        Ok(new) => {
            f.writer = new;
            log::info!("reopened the access log {}", f.path.display());
        }
        Err(e) => log::error!(
            "cannot reopen the access log {}: {e}; still writing to the old file",
            f.path.display()
        ),
    }
}

/// Background service that writes flood summaries and flushes the file every second.
pub struct Flusher;

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for Flusher {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => flush(),
                _ = shutdown.changed() => {
                    flush();
                    // Keep flushing while the drain closes connections.
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        flush();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_lines() {
        let fields = [
            ("client", Value::Text(Some("10.0.0.1:5000"))),
            ("sni", Value::Text(None)),
            ("bytes_up", Value::Number(42)),
            ("detail", Value::Text(Some("said \"no\"\n"))),
        ];
        assert_eq!(
            render(LogFormat::Text, &fields),
            "client=10.0.0.1:5000 sni=- bytes_up=42 detail=\"said \\\"no\\\"\\n\""
        );
        assert_eq!(
            render(LogFormat::Json, &fields),
            r#"{"client":"10.0.0.1:5000","sni":null,"bytes_up":42,"detail":"said \"no\"\n"}"#
        );
    }
}
