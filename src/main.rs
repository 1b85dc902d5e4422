//! The `snigate` binary: parse the options, set up logging, run. See [`snigate::cli`].

use clap::Parser;

fn main() {
    let cli = snigate::cli::Cli::parse();
    snigate::logging::init();
    std::process::exit(snigate::cli::run(cli));
}
