//! The one integration-test crate (see `autotests = false` in Cargo.toml): real sockets, a real
//! upstream, the real proxy.

// A panic in a test or its fixtures is a failed assertion, not a crash on user input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Fixtures: the upstream server, the in-process proxy, the binary runner, raw HTTP helpers.
mod support;

/// Forwarding, headers, streaming, upgrades, refusals, upstream failures, shutdown.
mod proxy;

/// File saves to `/changes` events, replay, lagging and many tabs, control endpoints.
mod changes;

/// Editors and tools writing in odd ways: bulk writes with pauses, unrelated temp names, safe
/// writes with a pause between renames, IDE state, git's ignore sources from outside.
mod watch_editors;

/// The real binary: errors, precedence, help, start-up, SIGTERM.
mod cli;

/// The compose sidecar's environment, run for real in poll mode.
mod docker;

/// Static mode: serving a folder.
mod static_files;

/// Injection: the fixture corpus in every coding, streaming, pass-through, CSP in Chromium.
mod inject;

/// The real binary in front of dev servers we did not write: http.server, Flask, PHP, Vite.
mod polyglot;

/// The browser client in headless Chromium: CSS and image swaps, container updates, the error
/// overlay, full reloads, one stream for many tabs, leader hand-over, proxy restarts.
mod client;

/// Hostile clients and faulty upstreams: limits, slowloris, smuggling, garbage, upstreams that
/// die, lie or hang, clients that leave.
mod hostile;

/// Saves a restart of the upstream follows: held until it, one reload instead of two or three.
mod rebuild;
