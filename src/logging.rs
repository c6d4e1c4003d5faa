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
    // notify's own warnings are its internal bookkeeping (a deleted directory's watch it could
    // not remove, as a debug dump); what matters of them reaches our log as a watch error.
    let default = format!("warn,notify=error,hmr_proxy={level}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A failed write to stderr (a closed pipe: `hmr-proxy … | head`) is otherwise reported
        // with `eprintln!`, which panics on that same broken stderr, in whichever task logged:
        // the signal handler among them, and shutdown never came. Lost log lines are the lesser harm.
        .log_internal_errors(false)
        .init();
}
