//! `loadgen`: the load generator of snigate's side-by-side benchmark
//! (`load-tests/bench.sh` drives it). It captures real ClientHellos, runs the upstream
//! servers, runs each workload against a gateway (or directly against the upstreams), and
//! turns the results into the table.

mod breakdown;
mod bulk;
mod client;
mod hello;
mod idle;
mod open;
mod rate;
mod reloads;
mod report;
mod upstream;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for snigate's side-by-side benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Output {
    /// Gateway name for the results (snigate, haproxy, nginx, sniproxy, direct).
    #[arg(long)]
    label: String,
    /// File to append `gateway<TAB>metric<TAB>value<TAB>run` lines to.
    #[arg(long)]
    out: PathBuf,
    /// Which run of the benchmark this is (ratios are taken within a run).
    #[arg(long, default_value_t = 1)]
    run: u32,
}

impl Output {
    fn record(&self, metric: &str, value: f64) -> std::io::Result<()> {
        let line = format!("{}\t{metric}\t{value}\t{}\n", self.label, self.run);
        let _ = std::io::stdout().write_all(line.as_bytes());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.out)?;
        f.write_all(line.as_bytes())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Capture the ClientHello `openssl s_client` sends for each name.
    Hellos {
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the upstream servers on these addresses.
    Upstreams {
        #[arg(long, value_delimiter = ',')]
        listen: Vec<SocketAddr>,
    },
    /// Connection rate and latency.
    Rate {
        /// Where to connect: the gateway, or one upstream per hello (in name order).
        #[arg(long, value_delimiter = ',')]
        targets: Vec<SocketAddr>,
        #[arg(long)]
        hellos: PathBuf,
        #[arg(long, default_value = "127.0.30.1-8")]
        sources: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 1.0)]
        warmup_secs: f64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Gateway processes, for CPU per connection.
        #[arg(long)]
        pid: Vec<u32>,
        /// Put before each metric name (`t2_` for the run with two gateway threads).
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        output: Output,
    },
    /// Open-loop connection rate: Poisson arrivals at a fixed offered rate; latency to the
    /// first byte back, counted from each connection's scheduled start, and the gateway's
    /// user and system CPU per connection.
    Open {
        /// Where to connect: the gateway, or one upstream per hello (in name order).
        #[arg(long, value_delimiter = ',')]
        targets: Vec<SocketAddr>,
        #[arg(long)]
        hellos: PathBuf,
        #[arg(long, default_value = "127.0.30.1-8")]
        sources: String,
        /// Offered connections per second.
        #[arg(long)]
        rate: f64,
        /// Metric prefix, e.g. `open50` for the run at 50% of the best peer's rate.
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 1.0)]
        warmup_secs: f64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Connections in flight at most; one more is not started and counts as failed.
        #[arg(long, default_value_t = 4096)]
        max_in_flight: usize,
        /// Gateway processes, for CPU per connection.
        #[arg(long)]
        pid: Vec<u32>,
        /// Reload the gateway during the measured window: the process to send SIGHUP (a
        /// pid of 1 or more: 0 and -1 would signal groups of processes).
        #[arg(long, requires_all = ["hup_config", "hup_alternates"],
              value_parser = clap::value_parser!(u32).range(1..i64::from(i32::MAX)))]
        hup_pid: Option<u32>,
        /// The config file replaced before each SIGHUP.
        #[arg(long, requires = "hup_pid")]
        hup_config: Option<PathBuf>,
        /// The files it is replaced by, in turn (on the same filesystem).
        #[arg(long, value_delimiter = ',', requires = "hup_pid")]
        hup_alternates: Vec<PathBuf>,
        /// Milliseconds between reloads.
        #[arg(long, default_value_t = 500)]
        hup_every_ms: u64,
        #[command(flatten)]
        output: Output,
    },
    /// Bulk throughput one way.
    Bulk {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        hello: PathBuf,
        #[arg(long, default_value = "127.0.30.1-8")]
        sources: String,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        /// `up` (client to upstream) or `down`.
        #[arg(long)]
        direction: String,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[command(flatten)]
        output: Output,
    },
    /// Memory per idle relayed connection.
    Idle {
        #[arg(long, value_delimiter = ',')]
        targets: Vec<SocketAddr>,
        #[arg(long)]
        hellos: PathBuf,
        #[arg(long, default_value = "127.0.30.1-64")]
        sources: String,
        #[arg(long)]
        conns: usize,
        /// Gateway processes whose memory is measured.
        #[arg(long)]
        pid: Vec<u32>,
        /// Metric name, e.g. kib_idle_5k.
        #[arg(long)]
        metric: String,
        #[command(flatten)]
        output: Output,
    },
    /// One row of the per-connection breakdown: system calls from an `strace -c` summary,
    /// instructions and allocations from a callgrind dump.
    Breakdown {
        #[arg(long)]
        gateway: String,
        /// The `strace -c -o` file, and the connections completed while it ran.
        #[arg(long)]
        strace: Option<PathBuf>,
        #[arg(long, default_value_t = 0.0)]
        strace_conns: f64,
        /// The callgrind dump, and the connections completed while it counted.
        #[arg(long)]
        callgrind: Option<PathBuf>,
        #[arg(long, default_value_t = 0.0)]
        callgrind_conns: f64,
    },
    /// Print the results table.
    Report {
        #[arg(long)]
        results: PathBuf,
        /// Connections held by the small and the large idle test.
        #[arg(long, default_value_t = 5000)]
        idle_small: usize,
        #[arg(long, default_value_t = 50000)]
        idle_large: usize,
    },
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Hellos { names, out } => hello::capture(&names, &out),
        Command::Upstreams { listen } => Ok(upstream::serve(listen).await?),
        Command::Rate {
            targets,
            hellos,
            sources,
            concurrency,
            warmup_secs,
            seconds,
            pid,
            prefix,
            output,
        } => {
            let requests = rate::requests(&hello::load(&hellos)?);
            let r = rate::run(
                targets,
                requests,
                client::sources(&sources)?,
                concurrency,
                Duration::from_secs_f64(warmup_secs),
                Duration::from_secs_f64(seconds),
                pid,
            )
            .await;
            output.record(&format!("{prefix}conns_per_s"), r.per_sec)?;
            output.record(&format!("{prefix}p50_us"), r.latency_us[0] as f64)?;
            output.record(&format!("{prefix}p99_us"), r.latency_us[1] as f64)?;
            output.record(&format!("{prefix}p999_us"), r.latency_us[2] as f64)?;
            output.record(&format!("{prefix}errors"), r.errors as f64)?;
            if let Some(cpu) = r.cpu_us_per_conn {
                output.record(&format!("{prefix}cpu_us_per_conn"), cpu)?;
            }
            Ok(())
        }
        Command::Open {
            targets,
            hellos,
            sources,
            rate,
            prefix,
            warmup_secs,
            seconds,
            max_in_flight,
            pid,
            hup_pid,
            hup_config,
            hup_alternates,
            hup_every_ms,
            output,
        } => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("--rate must be a positive number, not {rate}").into());
            }
            let requests = rate::requests(&hello::load(&hellos)?);
            let reloading = match (hup_pid, hup_config) {
                (Some(pid), Some(config)) => Some(reloads::spawn(
                    reloads::Reloads {
                        pid: i32::try_from(pid)?,
                        config,
                        alternates: hup_alternates,
                        every: Duration::from_millis(hup_every_ms.max(1)),
                    },
                    Duration::from_secs_f64(warmup_secs),
                    Duration::from_secs_f64(warmup_secs + seconds),
                )),
                _ => None,
            };
            let r = open::run(
                targets,
                requests,
                client::sources(&sources)?,
                rate,
                Duration::from_secs_f64(warmup_secs),
                Duration::from_secs_f64(seconds),
                max_in_flight,
                pid,
            )
            .await;
            if let Some(reloading) = reloading {
                let sent = reloading
                    .join()
                    .map_err(|_| "the reloading thread panicked")?
                    .map_err(|e| format!("reloading the gateway: {e}"))?;
                eprintln!("open {prefix}: {sent} reloads asked for during the run");
            }
            eprintln!(
                "open {prefix}: offered {rate:.0}/s, completed {:.0}/s, {} failed of {} scheduled, launcher p99 late {} µs",
                r.per_sec, r.failed, r.scheduled, r.launch_late_p99_us
            );
            output.record(&format!("{prefix}_offered"), rate)?;
            output.record(&format!("{prefix}_conns_per_s"), r.per_sec)?;
            output.record(&format!("{prefix}_completed"), r.completed as f64)?;
            output.record(&format!("{prefix}_p50_us"), r.latency_us[0] as f64)?;
            output.record(&format!("{prefix}_p99_us"), r.latency_us[1] as f64)?;
            output.record(&format!("{prefix}_p999_us"), r.latency_us[2] as f64)?;
            output.record(&format!("{prefix}_failed"), r.failed as f64)?;
            output.record(&format!("{prefix}_late_us"), r.launch_late_p99_us as f64)?;
            if let Some((user, system)) = r.cpu_us_per_conn {
                output.record(&format!("{prefix}_user_us"), user)?;
                output.record(&format!("{prefix}_sys_us"), system)?;
            }
            Ok(())
        }
        Command::Bulk {
            target,
            hello,
            sources,
            conns,
            direction,
            seconds,
            output,
        } => {
            let up = match direction.as_str() {
                "up" => true,
                "down" => false,
                other => return Err(format!("--direction must be up or down, not {other}").into()),
            };
            let hello = std::fs::read(&hello)?;
            let mbps = bulk::run(
                target,
                hello,
                client::sources(&sources)?,
                conns,
                up,
                Duration::from_secs_f64(seconds),
            )
            .await?;
            Ok(output.record(
                &format!("{}{conns}_mbps", if up { "up" } else { "down" }),
                mbps,
            )?)
        }
        Command::Idle {
            targets,
            hellos,
            sources,
            conns,
            pid,
            metric,
            output,
        } => {
            let hellos: Vec<Vec<u8>> = hello::load(&hellos)?.into_iter().map(|(_, h)| h).collect();
            let r = idle::run(targets, hellos, client::sources(&sources)?, conns, pid).await?;
            eprintln!(
                "idle: {} connections: RSS {} KiB -> {} KiB",
                r.conns, r.rss_kib.0, r.rss_kib.1
            );
            Ok(output.record(&metric, r.per_conn())?)
        }
        Command::Breakdown {
            gateway,
            strace,
            strace_conns,
            callgrind,
            callgrind_conns,
        } => {
            let read =
                |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
            let (s, c) = (read(&strace), read(&callgrind));
            println!(
                "{}",
                breakdown::row(
                    &gateway,
                    s.as_deref().map(|s| (s, strace_conns)),
                    c.as_deref().map(|c| (c, callgrind_conns)),
                )
            );
            Ok(())
        }
        Command::Report {
            results,
            idle_small,
            idle_large,
        } => {
            let text = std::fs::read_to_string(results)?;
            print!("{}", report::table(&text, (idle_small, idle_large)));
            let open = report::open_table(&text);
            if !open.is_empty() {
                println!("\n### Open loop: new connections at a fixed offered rate\n");
                print!("{open}");
            }
            let threads = report::threads_table(&text);
            if !threads.is_empty() {
                println!("\n### One and two gateway threads (closed loop, all on CPU 0)\n");
                print!("{threads}");
            }
            println!("\n### Targets\n");
            print!("{}", report::targets(&text, idle_large));
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
