//! Log output: one line per meaningful event, to stderr, each opening with the local time of day
//! (`14:03:07`, as Vite's lines do: a proxy runs all day, and "when did the server restart?" is
//! asked of its log).
//!
//! Owns the tracing subscriber set-up and the mapping from `-v`/`-q` to a level. `RUST_LOG`, when
//! set, wins (it is the expert's knob, e.g. `RUST_LOG=hmr_proxy=trace,hyper=debug`; the binary's
//! name, `hmr-proxy`, is taken for the crate's).

use std::io::IsTerminal;

use time::UtcOffset;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::time::OffsetTime;

/// The time of day, to the second: a date would be noise in a dev server's terminal.
const LOCAL: &[BorrowedFormatItem<'static>] = format_description!("[hour]:[minute]:[second]");

/// The same in UTC, said so, when the local offset cannot be known (see [`clock`]).
const UTC: &[BorrowedFormatItem<'static>] = format_description!("[hour]:[minute]:[second]Z");

/// The clock of the log lines. The local offset is read now, at start, while the process has one
/// thread: the `time` crate reads it on Linux only then (the C library's time zone functions are
/// not safe to call while another thread may change the environment). Fixed for the process's
/// life, so a change to or from summer time shows an hour off until the next start; where it
/// cannot be read, the time is UTC and says so.
fn clock() -> OffsetTime<&'static [BorrowedFormatItem<'static>]> {
    match UtcOffset::current_local_offset() {
        Ok(offset) => OffsetTime::new(offset, LOCAL),
        Err(_) => OffsetTime::new(UtcOffset::UTC, UTC),
    }
}

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
    let default = match verbose {
        // `-vv`: the dependencies' debug output too (hyper's connections, notify's watches).
        v if v >= 2 => "debug,hmr_proxy=trace".to_string(),
        _ => format!("warn,notify=error,hmr_proxy={level}"),
    };
    // The binary's name stands for the crate's (`RUST_LOG=hmr-proxy=debug`): the target is
    // `hmr_proxy`, and a directive for a target that does not exist silenced every line.
    let asked = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let parsed = asked
        .as_deref()
        .map(|value| EnvFilter::try_new(value.replace("hmr-proxy", "hmr_proxy")));
    let (filter, refused) = match parsed {
        Some(Ok(filter)) => (filter, None),
        Some(Err(err)) => (EnvFilter::new(default), Some(err)),
        None => (EnvFilter::new(default), None),
    };
    // Colour only for a person at a terminal who has not asked for none (no-color.org).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_timer(clock())
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        // A failed write to stderr (a closed pipe: `hmr-proxy … | head`) is otherwise reported
        // with `eprintln!`, which panics on that same broken stderr, in whichever task logged:
        // the signal handler among them, and shutdown never came. Lost log lines are the lesser harm.
        .log_internal_errors(false)
        .init();
    if let (Some(err), Some(value)) = (refused, asked) {
        tracing::warn!(
            "RUST_LOG={value} is not a log filter ({err}); logging as -v/-q say. Write e.g. \
             RUST_LOG=hmr_proxy=debug"
        );
    }
}
