//! The `snigate` binary. See the library's `cli` module for the options.

fn main() {
    std::process::exit(snigate::cli::main());
}
