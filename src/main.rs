//! The `snigate` binary: parse the options, set up logging, run. See [`snigate::cli`].

use clap::Parser;

/// mimalloc, without transparent huge pages (see `process::without_huge_pages`).
/// Measured against glibc's allocator with `load-tests/bench.sh`'s callgrind and idle
/// workloads: each connection's Tokio task and readiness slots are 128-byte aligned, and
/// glibc's `posix_memalign` both costs about 650 instructions a call and leaves holes
/// between them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    snigate::process::without_huge_pages();
    let cli = snigate::cli::Cli::parse();
    snigate::logging::init();
    std::process::exit(snigate::cli::run(cli));
}
