//! Log output: one line per meaningful event, to stderr.
//!
//! Owns the tracing subscriber set-up and the mapping from `-v`/`-q` to a level. `RUST_LOG`, when
//! set, wins (it is the expert's knob, e.g. `RUST_LOG=hmr_proxy=trace,hyper=debug`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `verbose` and `quiet` are the counts of `-v` and `-q`.
pub fn init(verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    // Dependencies stay at warn unless RUST_LOG asks: hyper's debug output is per-frame noise.
    let default = format!("warn,hmr_proxy={level}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
