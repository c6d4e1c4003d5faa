//! The raw command line: what the user typed or exported, before any validation.
//!
//! Owns the clap definition of every flag and its `HMR_PROXY_*` environment variable. Every value
//! is an `Option` so "not given" stays distinguishable from "given the default": the config file
//! sits *below* flags and environment, and only `config::Config::load` decides what wins. Nothing
//! here parses URLs, paths or durations; that happens once, in `config`, with errors that name the
//! flag. Flags that take an optional value (`--poll[=MS]`, `--no-inject[=BOOL]`) require `=` so
//! that `--poll http://localhost:8000` never swallows the upstream.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser};

/// Live reload and hot module replacement in front of any development server.
#[derive(Debug, Parser)]
#[command(name = "hmr-proxy", version, about, max_term_width = 100)]
#[command(
    after_help = "Options can also be set in the environment (HMR_PROXY_<OPTION>, e.g. \
    HMR_PROXY_LISTEN; empty counts as unset) or in the config file (./hmr-proxy.toml, or \
    --config; --no-inject is `inject = false` there). -v, -q, --open and --health-check are flags only, \
    and --config has no key in the file.\n\
    Precedence: flags > environment > config file > defaults. UPSTREAM and --serve are one \
    choice: the strongest layer giving either wins."
)]
pub struct Cli {
    /// Development server to front, e.g. http://localhost:8000 (no upstream: serve a folder).
    #[arg(value_name = "UPSTREAM", env = "HMR_PROXY_UPSTREAM")]
    pub upstream: Option<String>,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub proxy: ProxyArgs,

    #[command(flatten)]
    pub watch: WatchArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Where the proxy listens and what it serves itself.
#[derive(Debug, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1:3000, or the next free port if that one is
    /// taken]; a bare port means 127.0.0.1:PORT, a bare address ADDR:3000. An address set here
    /// never moves.
    #[arg(short, long, value_name = "ADDR", env = "HMR_PROXY_LISTEN")]
    pub listen: Option<String>,

    /// No upstream: serve static files from DIR.
    #[arg(long, value_name = "DIR", env = "HMR_PROXY_SERVE")]
    pub serve: Option<PathBuf>,

    /// Serving a folder: answer a page address that is no file and has no extension (a
    /// single-page app's route, /app/users/42) with the folder's index.html.
    #[arg(long, value_name = "BOOL", env = "HMR_PROXY_SPA", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub spa: Option<bool>,

    /// Path of the live-reload event stream [default: /changes].
    #[arg(long, value_name = "PATH", env = "HMR_PROXY_CHANGES_PATH")]
    pub changes_path: Option<String>,

    /// Comment sent on idle event streams to keep them open [default: 15s].
    #[arg(long, value_name = "DURATION", env = "HMR_PROXY_HEARTBEAT")]
    pub heartbeat: Option<String>,

    /// Do not inject the browser client into HTML pages (the client is still served).
    #[arg(long, value_name = "BOOL", env = "HMR_PROXY_NO_INJECT", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_inject: Option<bool>,

    /// How long in-flight requests may run after Ctrl-C or SIGTERM [default: 5s].
    #[arg(long, value_name = "DURATION", env = "HMR_PROXY_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,

    /// Close a connection that takes longer than this to send a request's headers, or sits idle
    /// between requests; answer 408 to a request body that pauses this long [default: 20s].
    #[arg(long, value_name = "DURATION", env = "HMR_PROXY_HEADER_TIMEOUT")]
    pub header_timeout: Option<String>,

    /// Also accept requests for this host name (DNS-rebinding protection allows localhost,
    /// *.localhost and IP addresses); `.example.test` allows a domain and its subdomains; `all`
    /// turns the check off. Repeatable.
    #[arg(
        long,
        value_name = "HOST",
        env = "HMR_PROXY_ALLOWED_HOST",
        value_delimiter = ','
    )]
    pub allowed_host: Option<Vec<String>>,

    /// Most connections served at once; more wait until one closes [default: 16384].
    #[arg(long, value_name = "N", env = "HMR_PROXY_MAX_CONNECTIONS")]
    pub max_connections: Option<String>,

    /// Open the proxy in the browser once it listens, at PATH [default: /]: the command in
    /// BROWSER if set (`BROWSER=none` opens nothing), else the system's (xdg-open, open).
    #[arg(long, value_name = "PATH", num_args = 0..=1, require_equals = true,
          default_missing_value = "/")]
    pub open: Option<String>,

    /// Ask the proxy listening at --listen whether it is up, then exit: 0 if it answers, 1 if
    /// not (for container health checks; needs no curl).
    #[arg(long)]
    pub health_check: bool,

    /// TOML config file [default: ./hmr-proxy.toml when present].
    #[arg(short, long, value_name = "FILE", env = "HMR_PROXY_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How requests reach the upstream.
#[derive(Debug, Args)]
#[command(next_help_heading = "Proxy")]
pub struct ProxyArgs {
    /// Send paths under PATH to another dev server (longest prefix wins); repeatable.
    #[arg(
        long,
        value_name = "PATH=URL",
        env = "HMR_PROXY_ROUTE",
        value_delimiter = ','
    )]
    pub route: Option<Vec<String>>,

    /// Send the browser's Host header upstream instead of the upstream's own (Django, SvelteKit
    /// and Astro check a POST's Origin against Host).
    #[arg(long, value_name = "BOOL", env = "HMR_PROXY_KEEP_HOST", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub keep_host: Option<bool>,

    /// Accept any TLS certificate from an https:// upstream that is not on this machine (one on
    /// loopback is always accepted: dev servers use self-signed certificates).
    #[arg(long, value_name = "BOOL", env = "HMR_PROXY_INSECURE", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure: Option<bool>,

    /// Give up connecting to the upstream after this long, e.g. 3s or 500ms (whole numbers of ms,
    /// s, m or h) [default: 3s].
    #[arg(long, value_name = "DURATION", env = "HMR_PROXY_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<String>,

    /// Give up waiting for the upstream's response headers this long after the request's last bytes
    /// (a slow upload does not count) [default: 120s].
    #[arg(long, value_name = "DURATION", env = "HMR_PROXY_RESPONSE_TIMEOUT")]
    pub response_timeout: Option<String>,
}

/// What is watched for changes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Watch")]
pub struct WatchArgs {
    /// Directory to watch, optionally mapped to a URL prefix (static=/assets); repeatable.
    #[arg(
        short,
        long,
        value_name = "DIR[=URL]",
        env = "HMR_PROXY_WATCH",
        value_delimiter = ','
    )]
    pub watch: Option<Vec<String>>,

    /// Glob of paths to ignore, relative to the watched folder (`*.map`, `dist/`, `tmp/**`); repeatable.
    #[arg(long, value_name = "GLOB", env = "HMR_PROXY_IGNORE")]
    pub ignore: Option<Vec<String>>,

    /// Quiet time that ends a burst of changes, in milliseconds; 0 sends each event as it comes
    /// [default: 10].
    #[arg(long, value_name = "MS", env = "HMR_PROXY_DEBOUNCE")]
    pub debounce: Option<String>,

    /// Poll the file system instead of OS events (bind mounts), every MS (or e.g. 2s); a bare
    /// --poll polls at the config file's poll_interval, else every 250 ms [default: off].
    #[arg(long, value_name = "MS", env = "HMR_PROXY_POLL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub poll: Option<String>,
}

/// How much is logged.
#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Log more (-v debug, -vv trace); RUST_LOG, when set, overrides -v and -q.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Log less (-q warnings only, -qq errors only); RUST_LOG, when set, overrides it.
    #[arg(short, long, action = ArgAction::Count)]
    pub quiet: u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn optional_values_need_equals_so_the_upstream_is_not_swallowed() {
        let cli = Cli::try_parse_from(["hmr-proxy", "--poll", "http://localhost:8000"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.watch.poll.as_deref(), Some("true"));
        assert_eq!(cli.upstream.as_deref(), Some("http://localhost:8000"));

        let cli = Cli::try_parse_from(["hmr-proxy", "--no-inject", "http://localhost:8000"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.server.no_inject, Some(true));
        assert_eq!(cli.upstream.as_deref(), Some("http://localhost:8000"));
    }

    #[test]
    fn repeated_and_comma_separated_watch_dirs() {
        let cli = Cli::try_parse_from(["hmr-proxy", "-w", "a,b=/x", "--watch", "c"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cli.watch.watch,
            Some(vec!["a".to_string(), "b=/x".to_string(), "c".to_string()])
        );
    }
}
