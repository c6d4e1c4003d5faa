//! The resolved configuration, and the one place where layers are merged and values validated.
//!
//! # Layers
//!
//! A setting can come from four places. From strongest to weakest:
//!
//! 1. a command-line flag (`--listen 127.0.0.1:4000`),
//! 2. its environment variable (`HMR_PROXY_LISTEN`), which clap reads for us,
//! 3. the config file (`--config FILE`, else `./hmr-proxy.toml` when present),
//! 4. the built-in default.
//!
//! clap already resolves 1 over 2 and tells us which of the two supplied a value
//! ([`clap::parser::ValueSource`]), so each raw value here carries its [`Origin`]. The file is merged
//! below that, key by key, by destructuring the CLI struct exhaustively: a new flag that is not wired
//! into [`Config::load`] is a compile error. Lists (`watch`, `ignore`, `route`, `allowed_hosts`) are
//! replaced, not appended, by a stronger layer, so `HMR_PROXY_WATCH` fully describes what is
//! watched. `upstream` and `serve` are one choice, made by the strongest layer that gives either.
//! An empty `HMR_PROXY_*` variable is not read at all (see `without_empty_variables`).
//!
//! # Validation
//!
//! Every value is parsed here, once, at start-up: URLs, addresses, durations, directories, globs.
//! Errors name the origin (`--listen`, `HMR_PROXY_LISTEN`, `hmr-proxy.toml: key listen`) and the
//! fix. After [`Config::load`] nothing downstream sees an `Option` that means "not given".
//!
//! This module does not bind sockets or touch the network: a port in use is found by `lib::bind`.

mod error;
pub mod file;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use crate::cli::{Cli, OutputArgs, ProxyArgs, ServerArgs, WatchArgs};
pub use error::{ConfigError, Origin};
use file::FileConfig;

/// Port used when `--listen` is not given; 3000 is what browser-sync and most peers use.
pub const DEFAULT_PORT: u16 = 3000;
/// Connecting to a dev server on loopback or a compose network takes milliseconds; three seconds
/// means the server is not there, and the user should see the error page rather than wait.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// First requests to Next.js, Vite (dependency optimisation) or Phoenix (compilation) can take tens
/// of seconds before headers arrive; two minutes leaves room for a slow cold build.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// `docker stop` sends SIGKILL after ten seconds; five leaves room to exit cleanly before it.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Editors save in bursts of a few events within a millisecond or two, and a `git checkout` of 500
/// files writes them with sub-millisecond gaps; 10 ms of quiet folds both into one batch (measured
/// in bench/: 5–20 ms all do) while keeping save-to-browser near 10 ms. The batch cap
/// (`watch::batch`) keeps a slow checkout on a loaded machine in one batch too.
const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(10);
/// A poll walks every watched file; 250 ms is chokidar's order of magnitude, quick enough to feel
/// live and cheap on a typical source tree.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Browsers and intermediaries drop idle connections after a minute or two; a comment every 15 s
/// (the WHATWG recommendation) keeps the stream open and detects dead peers.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// A client gets this long to send a request's headers, and a keep-alive connection may sit idle
/// this long (hyper ≥ 1.6 applies it to both). Short enough to shed slowloris connections, long
/// enough for any real browser.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// The event-stream path users and the client agree on by default.
const DEFAULT_CHANGES_PATH: &str = "/changes";
/// The proxy's own URL namespace; nothing under it is forwarded.
pub const OWN_PREFIX: &str = "/__hmr/";

/// Everything the proxy needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Where `listen` came from, so a port in use can name the setting to change.
    pub listen_origin: Option<Origin>,
    /// Forward to an upstream, or serve a folder.
    pub backend: Backend,
    /// Path prefixes sent to other upstreams, longest first; checked before `backend`.
    pub routes: Vec<Route>,
    /// How requests are forwarded.
    pub proxy: ProxySettings,
    /// What is watched (used by the watcher; validated here).
    pub watch: WatchSettings,
    /// Path of the event stream.
    pub changes_path: String,
    /// Interval of the event stream's keep-alive comments.
    pub heartbeat: Duration,
    /// Whether HTML pages get the client tag.
    pub inject: bool,
    /// How long in-flight work may continue after a shutdown signal.
    pub shutdown_grace: Duration,
    /// How long a client may take to send request headers (and idle between requests).
    pub header_timeout: Duration,
    /// Which `Host` names requests may carry.
    pub allowed_hosts: AllowedHosts,
    /// Connections served at once.
    pub max_connections: usize,
    /// The path to open in the browser once listening (`--open`; a flag only, as opening a
    /// browser is something one run does, not something a project or a container is).
    pub open: Option<String>,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
}

/// What answers requests that are not the proxy's own.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Forward to this dev server.
    Upstream(Upstream),
    /// Serve files from this directory (canonical path).
    Static {
        root: PathBuf,
        /// True when neither an upstream nor `--serve` was given and the working directory is
        /// served by default (start-up says so).
        implicit: bool,
        /// A page address that is no file answers with the folder's `index.html` (`--spa`).
        spa: bool,
    },
}

/// Requests whose path is `prefix` or lies below it go to `upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Starts with `/`, no trailing `/` (except the root itself).
    pub prefix: String,
    pub upstream: Upstream,
}

impl Route {
    /// Whether `path` falls under this route: `/api` matches `/api` and `/api/x`, not `/apix`.
    /// Escapes count in either case (`%c3%a9` is `%C3%A9`, as the prefix is kept).
    pub fn matches(&self, path: &str) -> bool {
        if path.contains('%') {
            let normal = as_browsers_send(path);
            if normal != path {
                return self.matches_as_sent(&normal);
            }
        }
        self.matches_as_sent(path)
    }

    fn matches_as_sent(&self, path: &str) -> bool {
        match path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/') || self.prefix == "/",
            None => false,
        }
    }
}

impl Config {
    /// Every distinct upstream: the default one first, then the routes' (by authority).
    pub fn upstreams(&self) -> Vec<&Upstream> {
        let mut all: Vec<&Upstream> = Vec::new();
        if let Backend::Upstream(up) = &self.backend {
            all.push(up);
        }
        for route in &self.routes {
            if !all.iter().any(|u| u.authority == route.upstream.authority) {
                all.push(&route.upstream);
            }
        }
        all
    }
}

/// A validated upstream origin: `http://host:port`, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `https://`: the proxy speaks TLS to it (`proxy::tls`).
    pub tls: bool,
    /// The host as written (`localhost`, `app`, `127.0.0.1`, `[::1]`).
    pub host: String,
    /// The port (80, or 443 for https, when omitted).
    pub port: u16,
    /// `host:port` as sent in `Host` and used to connect.
    pub authority: http::uri::Authority,
}

impl Upstream {
    /// `http://host:port` (or `https://`), the base every forwarded request URI is built on.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme(), self.authority)
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// Host names requests may use, beyond the always-allowed loopback names and IP literals.
///
/// A page on `http://evil.example` whose DNS is rebound to 127.0.0.1 would otherwise read the
/// proxy (and the dev server behind it) as same-origin; checking `Host` is what Vite's
/// `server.allowedHosts` and webpack-dev-server's `allowedHosts` do since their CVEs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// The check is off (`--allowed-host all`).
    All,
    /// Exact names, and `.domain` entries allowing a domain and its subdomains (lower case).
    Names(Vec<String>),
}

/// More simultaneous connections than a dev proxy ever needs (ten thousand tabs' streams fit),
/// yet a bound: past it, new connections wait in the listen backlog instead of exhausting
/// file descriptors.
const DEFAULT_MAX_CONNECTIONS: usize = 16384;

/// Forwarding behaviour.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub keep_host: bool,
    /// Accept any certificate from an https upstream off this machine (`proxy::tls`).
    pub insecure: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// How long a request body may stall between two of its frames (`--header-timeout`'s
    /// value: the same patience with a client, for the rest of its request).
    pub body_timeout: Duration,
}

/// What to watch, and how.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub roots: Vec<WatchRoot>,
    /// Extra ignore globs, validated.
    pub ignore: Vec<String>,
    pub debounce: Duration,
    /// `Some(interval)` to poll instead of using OS events.
    pub poll: Option<Duration>,
    /// Nothing was named, and the folder the proxy was started in (a project's top) is watched.
    pub whole_project: bool,
}

/// One watched directory and the URL prefix its files are served under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRoot {
    /// Canonical directory path.
    pub dir: PathBuf,
    /// URL prefix, starting and ending with `/`.
    pub url: String,
    /// Ignore globs for this root only.
    pub ignore: Vec<String>,
}

/// A raw value and where it came from.
struct Raw<T> {
    value: T,
    origin: Origin,
}

/// The layers as given: parsed flags (with clap's knowledge of flag vs environment) and the file.
struct Layers<'a> {
    matches: &'a ArgMatches,
    command: clap::Command,
    file: FileConfig,
    file_path: Option<PathBuf>,
}

impl Layers<'_> {
    /// Where clap found the argument `id`: a flag (or the positional) or its environment variable.
    fn cli_origin(&self, id: &str) -> Origin {
        let arg = self.command.get_arguments().find(|a| a.get_id() == id);
        let from_env = self.matches.value_source(id) == Some(ValueSource::EnvVariable);
        match arg {
            Some(arg) if from_env => Origin::Env(
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            Some(arg) => Origin::Flag(match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => id.to_uppercase(),
            }),
            None => Origin::Flag(id.to_string()),
        }
    }

    fn file_origin(&self, key: &'static str) -> Origin {
        Origin::File {
            path: self.file_path.clone().unwrap_or_default(),
            key,
        }
    }

    /// The flag/env value when given, else the file's, each tagged with its origin.
    fn pick<T>(
        &self,
        cli: Option<T>,
        id: &str,
        file: Option<T>,
        key: &'static str,
    ) -> Option<Raw<T>> {
        match cli {
            Some(value) => {
                let origin = self.cli_origin(id);
                // Said: a compose file's variable silently beat the config file's key, which
                // looked ignored (docker/README.md warns of it; the log now shows it).
                if file.is_some()
                    && let Origin::File { path, key } = self.file_origin(key)
                {
                    tracing::info!("{origin} overrides `{key}` in {}", path.display());
                }
                Some(Raw { value, origin })
            }
            None => file.map(|value| Raw {
                value,
                origin: self.file_origin(key),
            }),
        }
    }
}

impl Config {
    /// Parse the process's arguments (and, through clap, its environment). Returns clap's error for
    /// `--help`, `--version` and malformed flags so the caller can let clap print it.
    pub fn parse_args<I, T>(args: I) -> Result<(Cli, ArgMatches), clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let matches = without_empty_variables(Cli::command())
            .try_get_matches_from(&args)
            .map_err(|err| value_after_a_space(from_environment(err, &args), &args))?;
        let cli = Cli::from_arg_matches(&matches)?;
        Ok((cli, matches))
    }

    /// Where the proxy listens, and nothing else, for `--health-check`: the running proxy read
    /// the rest when it started, and what has changed since (a config file edited with a typo,
    /// a watched folder not there for the moment) must not make a healthy proxy look unhealthy.
    /// The file is read for its `listen` alone, from its `listen = "…"` line when it no longer
    /// parses as a whole; an unreadable one counts as not giving it.
    pub fn listen_address(cli: &Cli, cwd: &Path) -> Result<SocketAddr, String> {
        let from_file = || {
            let path = file::locate(cli.server.config.as_deref(), cwd)?;
            let text = std::fs::read_to_string(path).ok()?;
            match toml::from_str::<toml::Table>(&text) {
                Ok(table) => table.get("listen")?.as_str().map(str::to_string),
                Err(_) => text.lines().find_map(|line| {
                    let (key, value) = line.split_once('=')?;
                    let value = value.trim();
                    (key.trim() == "listen" && value.len() >= 2)
                        .then(|| value.trim_matches(['"', '\'']).to_string())
                }),
            }
        };
        match cli.server.listen.clone().or_else(from_file) {
            Some(value) => parse_listen(&value).map_err(|problem| {
                format!(
                    "{problem}: fix --listen, HMR_PROXY_LISTEN or the config file's `listen` \
                     (an address like 127.0.0.1:3000 or 0.0.0.0:3000, or a port)"
                )
            }),
            None => Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                DEFAULT_PORT,
            )),
        }
    }

    /// Merge flags, environment, config file and defaults; validate everything. `cwd` is where
    /// relative paths and `./hmr-proxy.toml` are resolved.
    pub fn load(cli: Cli, matches: &ArgMatches, cwd: &Path) -> Result<Config, ConfigError> {
        // Exhaustive on purpose: a flag added to `Cli` must be wired here or this fails to compile.
        let Cli {
            upstream,
            server:
                ServerArgs {
                    listen,
                    serve,
                    spa,
                    changes_path,
                    heartbeat,
                    no_inject,
                    shutdown_grace,
                    header_timeout,
                    allowed_host,
                    max_connections,
                    config,
                    // An action, not a setting: `main` acts on it after loading.
                    health_check: _,
                    open,
                },
            proxy:
                ProxyArgs {
                    route,
                    keep_host,
                    insecure,
                    connect_timeout,
                    response_timeout,
                },
            watch:
                WatchArgs {
                    watch,
                    ignore,
                    debounce,
                    poll,
                },
            output: OutputArgs { .. },
        } = cli;

        let file_path = file::locate(config.as_deref(), cwd);
        let file = match &file_path {
            Some(path) => file::read(path)?,
            None => FileConfig::default(),
        };
        let layers = Layers {
            matches,
            command: Cli::command(),
            file_path,
            file,
        };
        let names: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect();
        for (name, nearest) in unknown_variables(&layers.command, names.iter().map(String::as_str))
        {
            match nearest {
                // A misspelt option (`HMR_PROXY_UPSTRAEM`) that only warned left the proxy
                // serving the working folder, on 0.0.0.0 if that was set, instead of the app.
                Some(real) => {
                    let fix = if real.strip_suffix(&name[PREFIX.len()..])
                        == Some(&format!("{PREFIX}NO_"))
                    {
                        format!(
                            "did you mean {real}? It says the opposite: {real}=true turns it off"
                        )
                    } else {
                        format!("did you mean {real}?")
                    };
                    return Err(ConfigError::invalid(
                        Origin::Env(name),
                        "is not a setting",
                        fix,
                    ));
                }
                None => tracing::warn!(
                    "{name} is not a setting and is ignored: `hmr-proxy --help` names each \
                     option's variable"
                ),
            }
        }
        let f = &layers.file;

        let listen_raw = layers.pick(listen, "listen", f.listen.clone(), "listen");
        let listen_addr = match &listen_raw {
            Some(raw) => parse_listen(&raw.value).map_err(|problem| {
                ConfigError::invalid(
                    raw.origin.clone(),
                    problem,
                    "write an address like 127.0.0.1:3000 or 0.0.0.0:3000, or just a port like 3000",
                )
            })?,
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
        };

        let upstream_raw = layers.pick(upstream, "upstream", f.upstream.clone(), "upstream");
        let serve_raw = layers.pick(serve, "serve", f.serve.clone(), "serve");
        // One setting in two spellings (what answers requests): the strongest layer that gives
        // either wins, so `--serve public` overrides the file's `upstream`. Only one layer giving
        // both is a conflict.
        let (upstream_raw, serve_raw) = match (upstream_raw, serve_raw) {
            (Some(up), Some(dir)) => match layer(&up.origin).cmp(&layer(&dir.origin)) {
                std::cmp::Ordering::Less => (Some(up), None),
                std::cmp::Ordering::Greater => (None, Some(dir)),
                std::cmp::Ordering::Equal => {
                    return Err(ConfigError::Conflict {
                        first: up.origin,
                        second: dir.origin,
                        fix: "front a dev server (UPSTREAM) or serve a folder (--serve), not both"
                            .to_string(),
                    });
                }
            },
            given => given,
        };
        let spa = match layers
            .pick(spa, "spa", f.spa, "spa")
            .filter(|raw| raw.value)
        {
            Some(raw) if upstream_raw.is_some() => {
                return Err(ConfigError::invalid(
                    raw.origin,
                    "is for a served folder; a dev server answers its own app's routes",
                    "drop it, or serve a folder (no upstream, --serve DIR)",
                ));
            }
            on => on.is_some(),
        };
        let backend = match (upstream_raw, serve_raw) {
            (Some(up), _) => {
                // `--poll 500`: the flag takes its interval only after `=`, and the number
                // became the upstream.
                let bare_poll = matches.value_source("poll") == Some(ValueSource::CommandLine)
                    && poll.as_deref() == Some("true");
                let poll_meant = bare_poll && up.value.chars().all(|c| c.is_ascii_digit());
                // A bare port is taken for a dev server's URL, but for these.
                let lenient = !poll_meant && !cwd.join(&up.value).is_dir();
                let parsed = if lenient {
                    parse_upstream(&up.value)
                } else {
                    parse_upstream_strictly(&up.value)
                };
                Backend::Upstream(parsed.map_err(|(problem, mut fix)| {
                    if poll_meant {
                        fix = format!("write --poll={} for a poll interval, or {fix}", up.value);
                    } else if cwd.join(&up.value).is_dir() {
                        // `hmr-proxy site`, as `live-server site` and `vite site` take it.
                        fix = format!(
                            "to serve the folder, write --serve {}; for a dev server, {fix}",
                            up.value
                        );
                    } else if up.value.starts_with('/')
                        && matches.value_source("open") == Some(ValueSource::CommandLine)
                    {
                        // `--open /about/`: the flag takes its page only after `=`.
                        fix = format!("write --open={} for the page to open", up.value);
                    }
                    ConfigError::invalid(up.origin, problem, fix)
                })?)
            }
            (None, Some(dir)) => Backend::Static {
                root: existing_dir(cwd, &dir.value, &dir.origin)?,
                implicit: false,
                spa,
            },
            (None, None) => Backend::Static {
                root: existing_dir(cwd, Path::new("."), &Origin::Flag("--serve".into()))?,
                implicit: true,
                spa,
            },
        };

        // Flags or environment replace the file's routes, as for every list.
        let routes_origin = match route {
            Some(_) => layers.cli_origin("route"),
            None => layers.file_origin("route"),
        };
        let routes = resolve_routes(&layers, route)?;

        let header_timeout = duration_setting(
            layers.pick(
                header_timeout,
                "header_timeout",
                f.header_timeout.clone(),
                "header_timeout",
            ),
            DEFAULT_HEADER_TIMEOUT,
        )?;
        let proxy = ProxySettings {
            keep_host: layers
                .pick(keep_host, "keep_host", f.keep_host, "keep_host")
                .is_some_and(|raw| raw.value),
            insecure: layers
                .pick(insecure, "insecure", f.insecure, "insecure")
                .is_some_and(|raw| raw.value),
            connect_timeout: duration_setting(
                layers.pick(
                    connect_timeout,
                    "connect_timeout",
                    f.connect_timeout.clone(),
                    "connect_timeout",
                ),
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            response_timeout: duration_setting(
                layers.pick(
                    response_timeout,
                    "response_timeout",
                    f.response_timeout.clone(),
                    "response_timeout",
                ),
                DEFAULT_RESPONSE_TIMEOUT,
            )?,
            body_timeout: header_timeout,
        };

        let watch = resolve_watch(&layers, cwd, &backend, watch, ignore, debounce, poll)?;

        let changes_path = match layers.pick(
            changes_path,
            "changes_path",
            f.changes_path.clone(),
            "changes_path",
        ) {
            Some(raw) => validate_changes_path(raw)?,
            None => DEFAULT_CHANGES_PATH.to_string(),
        };

        let heartbeat = duration_setting(
            layers.pick(heartbeat, "heartbeat", f.heartbeat.clone(), "heartbeat"),
            DEFAULT_HEARTBEAT,
        )?;

        // `--no-inject` in flags/env, `inject = false` in the file: one meaning, two spellings.
        let inject = match no_inject {
            Some(no) => !no,
            None => f.inject.unwrap_or(true),
        };

        let shutdown_grace = duration_setting(
            layers.pick(
                shutdown_grace,
                "shutdown_grace",
                f.shutdown_grace.clone(),
                "shutdown_grace",
            ),
            DEFAULT_SHUTDOWN_GRACE,
        )?;

        if let Some(route) = routes.iter().find(|r| r.prefix == changes_path) {
            return Err(ConfigError::invalid(
                routes_origin,
                format!("route `{}` is the change stream's path", route.prefix),
                "pick another --changes-path or route prefix",
            ));
        }

        let allowed_hosts = match layers.pick(
            allowed_host,
            "allowed_host",
            f.allowed_hosts.clone(),
            "allowed_hosts",
        ) {
            None => AllowedHosts::Names(Vec::new()),
            Some(raw) => parse_allowed_hosts(raw)?,
        };
        let max_connections = match layers.pick(
            max_connections,
            "max_connections",
            f.max_connections.map(|n| n.to_string()),
            "max_connections",
        ) {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(raw) => match raw.value.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(ConfigError::invalid(
                        raw.origin,
                        format!("`{}` is not a positive number of connections", raw.value),
                        "give a number like 1024",
                    ));
                }
            },
        };

        let open = open.map(open_path).transpose()?;

        Ok(Config {
            listen: listen_addr,
            listen_origin: listen_raw.map(|raw| raw.origin),
            backend,
            routes,
            proxy,
            watch,
            changes_path,
            heartbeat,
            inject,
            shutdown_grace,
            header_timeout,
            allowed_hosts,
            max_connections,
            open,
            file: layers.file_path,
        })
    }
}

/// `--open`'s value: a path (and query) on the proxy, as a browser's address bar would take it.
fn open_path(value: String) -> Result<String, ConfigError> {
    let invalid = |problem: String| {
        ConfigError::invalid(
            Origin::Flag("--open".to_string()),
            problem,
            "give a path on the proxy, like --open=/admin/ (or --open alone for /)",
        )
    };
    if !value.starts_with('/') || value.starts_with("//") {
        return Err(invalid(format!("`{value}` is not a path")));
    }
    match http::uri::PathAndQuery::try_from(value.as_str()) {
        Ok(_) => Ok(value),
        Err(_) => Err(invalid(format!(
            "`{value}` is not a path a URL can carry (spaces and such are written %20)"
        ))),
    }
}

/// `command` with no environment variable read for an option whose variable is set but empty:
/// an empty `HMR_PROXY_*` variable (compose's `${UPSTREAM:-}` with `UPSTREAM` unset) is no
/// setting, for every option alike, so the config file's value or the default applies.
fn without_empty_variables(mut command: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty())
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |arg| arg.env(None::<&'static str>));
    }
    command
}

/// How strong the layer a value came from is: 0 for a flag, 1 for the environment, 2 for the
/// config file.
fn layer(origin: &Origin) -> u8 {
    match origin {
        Origin::Flag(_) => 0,
        Origin::Env(_) => 1,
        Origin::File { .. } => 2,
    }
}

/// clap names the flag of a bad value even when the value came from its environment variable
/// (`invalid value 'maybe' for '--no-inject[=<BOOL>]'`), where the user never typed the flag.
/// When the flag is not on the command line and its variable is set, the error names the
/// variable instead, in the one-line form of the other configuration errors.
fn from_environment(err: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return err;
    }
    let Some(ContextValue::String(shown)) = err.get(ContextKind::InvalidArg) else {
        return err;
    };
    // `shown` is the flag as clap displays it: `--no-inject[=<BOOL>]`, `--serve <DIR>`.
    let long = shown
        .trim_start_matches('-')
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .next()
        .unwrap_or_default();
    let command = Cli::command();
    let Some(arg) = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
    else {
        return err;
    };
    let Some(var) = arg.get_env() else {
        return err;
    };
    let flag = format!("--{long}");
    let with_value = format!("{flag}=");
    let typed = args.iter().skip(1).any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&with_value))
    });
    let Some(value) = std::env::var_os(var).filter(|_| !typed) else {
        return err;
    };
    // clap's own reason, after the flag it names: "value was not a boolean". (An empty variable
    // never gets here: it is no setting, see `without_empty_variables`.)
    let why = std::error::Error::source(&err)
        .map(|source| source.to_string())
        .unwrap_or_else(|| "it is not a valid value".to_string());
    let example = match arg.get_value_names().and_then(|names| names.first()) {
        Some(name) if name.as_str() == "BOOL" => "true or false".to_string(),
        Some(name) => format!("a {}", name.as_str().to_ascii_lowercase()),
        None => "a value".to_string(),
    };
    clap::Error::raw(
        err.kind(),
        format!(
            "environment variable {}={:?}: {why}; set it to {example} or unset it (it stands for {flag})\n",
            var.to_string_lossy(),
            value.to_string_lossy(),
        ),
    )
}

/// clap's "unexpected argument" for `--poll 500 http://localhost:8000`, with the cause: a flag
/// whose value is optional takes it only after `=` (a bare `--poll` is a setting of its own), so
/// `500` was taken for the upstream and the URL was one argument too many. Any other error, or
/// one with no such flag before the argument clap names, is left as it is.
fn value_after_a_space(err: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::UnknownArgument {
        return err;
    }
    let Some(ContextValue::String(unexpected)) = err.get(ContextKind::InvalidArg) else {
        return err;
    };
    let command = Cli::command();
    let args: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    let unexpected_at = args.iter().position(|a| a == unexpected);
    let separated = args.windows(2).enumerate().find_map(|(i, pair)| {
        let long = pair[0].strip_prefix("--")?;
        let value = pair[1];
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long) && arg.is_require_equals_set())?;
        let before = unexpected_at.is_none_or(|at| i < at);
        (before && !value.starts_with('-')).then(|| (arg.get_long().unwrap_or(long), value))
    });
    let Some((flag, value)) = separated else {
        return err;
    };
    clap::Error::raw(
        err.kind(),
        format!(
            "unexpected argument '{unexpected}': --{flag} takes its value after `=` only (a bare \
             --{flag} is a setting of its own), so `{value}` was read as another argument; write \
             --{flag}={value}\n"
        ),
    )
}

/// `--allowed-host` names: host names (no scheme, no port), `.domain` for a domain and its
/// subdomains, or `all`.
fn parse_allowed_hosts(raw: Raw<Vec<String>>) -> Result<AllowedHosts, ConfigError> {
    let mut names = Vec::new();
    for name in raw.value.iter().map(|n| n.trim().to_ascii_lowercase()) {
        if name.is_empty() {
            continue;
        }
        if name == "all" {
            return Ok(AllowedHosts::All);
        }
        let bare = name.trim_start_matches('.');
        let valid = !bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !valid {
            return Err(ConfigError::invalid(
                raw.origin,
                format!("`{name}` is not a host name"),
                "give a bare name like app.test (no scheme, no port), .example.test for a whole domain, or all",
            ));
        }
        names.push(name);
    }
    Ok(AllowedHosts::Names(names))
}

/// `--route PATH=URL` entries or `[[route]]` tables, validated and sorted longest prefix first.
fn resolve_routes(
    layers: &Layers<'_>,
    cli: Option<Vec<String>>,
) -> Result<Vec<Route>, ConfigError> {
    let entries: Vec<(String, String, Origin)> = match cli {
        Some(specs) => {
            let origin = layers.cli_origin("route");
            let mut entries = Vec::new();
            for spec in specs.iter().filter(|s| !s.trim().is_empty()) {
                let Some((path, url)) = spec.split_once('=') else {
                    let fix = origin.spelled(
                        "--route /api=http://localhost:8080",
                        "/api=http://localhost:8080",
                        "[[route]] path = \"/api\" upstream = \"http://localhost:8080\"",
                    );
                    return Err(ConfigError::invalid(
                        origin,
                        format!("`{spec}` is not PATH=URL"),
                        format!("write e.g. {fix}"),
                    ));
                };
                entries.push((
                    path.trim().to_string(),
                    url.trim().to_string(),
                    origin.clone(),
                ));
            }
            entries
        }
        None => layers
            .file
            .route
            .iter()
            .flatten()
            .map(|t| {
                (
                    t.path.clone(),
                    t.upstream.clone(),
                    layers.file_origin("route"),
                )
            })
            .collect(),
    };
    let mut routes = Vec::new();
    for (path, url, origin) in entries {
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(ConfigError::invalid(
                origin,
                format!("route path `{path}` is not a URL path"),
                "write a path like /api",
            ));
        }
        if path.starts_with(OWN_PREFIX) || format!("{path}/") == OWN_PREFIX {
            return Err(ConfigError::invalid(
                origin,
                format!("route path `{path}` is inside the proxy's own {OWN_PREFIX} namespace"),
                "pick a path outside it",
            ));
        }
        let upstream = parse_upstream(&url)
            .map_err(|(problem, fix)| ConfigError::invalid(origin.clone(), problem, fix))?;
        let prefix = match path.trim_end_matches('/') {
            "" => "/".to_string(),
            trimmed => as_browsers_send(trimmed),
        };
        if routes.iter().any(|r: &Route| r.prefix == prefix) {
            return Err(ConfigError::invalid(
                origin,
                format!("route path `{prefix}` is given twice"),
                "keep one upstream per path",
            ));
        }
        routes.push(Route { prefix, upstream });
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(routes)
}

fn resolve_watch(
    layers: &Layers<'_>,
    cwd: &Path,
    backend: &Backend,
    watch: Option<Vec<String>>,
    ignore: Option<Vec<String>>,
    debounce: Option<String>,
    poll: Option<String>,
) -> Result<WatchSettings, ConfigError> {
    let f = &layers.file;
    let mut roots = Vec::new();
    // An empty list (`--watch ''`, `--watch ,`) names nothing: the config file's folders still
    // apply, as if it were not given (an empty HMR_PROXY_WATCH is not given at all).
    let watch = watch.filter(|specs| specs.iter().any(|s| !s.trim().is_empty()));
    if let Some(specs) = watch {
        let origin = layers.cli_origin("watch");
        // Trimmed, as every other list's entries: `HMR_PROXY_WATCH="templates, static=/static"`.
        for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (dir, url) = match spec.split_once('=') {
                Some((dir, url)) => (dir.trim_end(), Some(url.trim_start())),
                None => (spec, None),
            };
            // `=/assets` alone named no folder, and watched the working directory as /assets.
            if dir.is_empty() {
                return Err(ConfigError::invalid(
                    origin,
                    format!("`{spec}` names no folder before the `=`"),
                    "write DIR=/prefix, e.g. static=/assets, or . for the working directory",
                ));
            }
            roots.push(watch_root(cwd, Path::new(dir), url, Vec::new(), &origin)?);
        }
    } else if let Some(tables) = &f.watch {
        let origin = layers.file_origin("watch");
        for table in tables {
            check_globs(&table.ignore, &origin)?;
            roots.push(watch_root(
                cwd,
                &table.dir,
                table.url.as_deref(),
                table.ignore.clone(),
                &origin,
            )?);
        }
    }
    let whole_project = roots.is_empty() && matches!(backend, Backend::Upstream(_));
    if roots.is_empty() {
        // Nothing named: watch what is served, or the project the proxy was started in.
        let dir = match backend {
            Backend::Static { root, .. } => root.clone(),
            Backend::Upstream(_) => cwd.to_path_buf(),
        };
        let origin = Origin::Flag("--watch".into());
        let root = watch_root(cwd, &dir, None, Vec::new(), &origin)?;
        // Started in a new terminal, in the home folder: the browser writes its profile there
        // (`.config/chromium`, `.mozilla`), each page load wrote its history and code cache, and
        // each write reloaded the page again, without end. `/` has `/proc`.
        if let Some(what) = home_or_top(&root.dir) {
            return Err(ConfigError::invalid(
                origin,
                format!(
                    "nothing names what to watch, and the default, {}, is {what}: the browser \
                     writes its profile there, and every write would reload the page",
                    root.dir.display()
                ),
                "start hmr-proxy in your project's folder, or name what to watch with --watch DIR",
            ));
        }
        roots.push(root);
    } else {
        for root in &roots {
            if let Some(what) = home_or_top(&root.dir) {
                tracing::warn!(
                    "watching {}, {what}: a browser writing its profile there reloads the page \
                     with every write; name the project's folders with --watch DIR instead",
                    root.dir.display()
                );
            }
        }
    }

    let ignore = ignore.map(|globs| globs.iter().flat_map(|g| split_globs(g)).collect());
    let ignore = match layers.pick(ignore, "ignore", f.ignore.clone(), "ignore") {
        Some(raw) => {
            check_globs(&raw.value, &raw.origin)?;
            raw.value
        }
        None => Vec::new(),
    };

    let debounce_raw = layers.pick(
        debounce,
        "debounce",
        f.debounce.map(|ms| ms.to_string()),
        "debounce",
    );
    let debounce = match debounce_raw {
        Some(raw) => parse_millis(&raw.value).map_err(|problem| {
            let fix = raw.origin.spelled("--debounce 50", "50", "debounce = 50");
            ConfigError::invalid(
                raw.origin,
                problem,
                format!("give milliseconds, e.g. {fix}"),
            )
        })?,
        None => DEFAULT_DEBOUNCE,
    };

    // An empty value (`--poll=`) is no setting, as an empty HMR_PROXY_POLL is; the flag alone
    // arrives as `true`.
    let asked = match poll.filter(|value| !value.trim().is_empty()) {
        Some(value) => Some(parse_poll(&value).map_err(|problem| {
            let origin = layers.cli_origin("poll");
            let fix = match &origin {
                Origin::Env(var) => {
                    format!("write {var}=true, {var}=500 (milliseconds), {var}=2s or {var}=false")
                }
                _ => "write --poll, --poll=500 (milliseconds), --poll=2s or --poll=false".into(),
            };
            ConfigError::invalid(origin, problem, fix)
        })?),
        None => None,
    };
    // A bare `--poll` says to poll; an interval the environment gives still says how often
    // (compose sets HMR_PROXY_POLL=500, and the user adds --poll), as the file's would.
    let asked = match asked {
        Some(Poll::On) if matches!(layers.cli_origin("poll"), Origin::Flag(_)) => {
            match std::env::var("HMR_PROXY_POLL").map(|value| parse_poll(&value)) {
                Ok(Ok(Poll::Every(interval))) => Some(Poll::Every(interval)),
                _ => Some(Poll::On),
            }
        }
        other => other,
    };
    let poll = match asked {
        Some(Poll::Off) => None,
        Some(Poll::Every(interval)) => Some(interval),
        // In the file, `poll_interval` alone turns polling on; `poll = false` wins over it. A bare
        // `--poll` (or HMR_PROXY_POLL=true) turns it on at the file's interval, if it has one.
        None | Some(Poll::On) => match (asked.map_or(f.poll, |_| Some(true)), f.poll_interval) {
            (Some(false), _) | (None, None) => None,
            (Some(true), None) => Some(DEFAULT_POLL_INTERVAL),
            (_, Some(0)) => {
                return Err(ConfigError::invalid(
                    layers.file_origin("poll_interval"),
                    "0 ms is not an interval",
                    "give a positive number of milliseconds, e.g. 250",
                ));
            }
            (_, Some(ms)) => Some(parse_millis(&ms.to_string()).map_err(|problem| {
                ConfigError::invalid(
                    layers.file_origin("poll_interval"),
                    problem,
                    "give a number of milliseconds, e.g. 250",
                )
            })?),
        },
    };

    Ok(WatchSettings {
        roots,
        ignore,
        debounce,
        poll,
        whole_project,
    })
}

fn watch_root(
    cwd: &Path,
    dir: &Path,
    url: Option<&str>,
    ignore: Vec<String>,
    origin: &Origin,
) -> Result<WatchRoot, ConfigError> {
    let dir = match existing_dir(cwd, dir, origin) {
        Ok(dir) => dir,
        Err(err) => match not_yet_made(cwd, dir) {
            // A build's output folder in a compose stack, say, which the app container makes
            // after the sidecar started: watched once it is there (as a root that vanishes is).
            Some(later) => {
                tracing::warn!(
                    "{origin}: directory `{}` does not exist (yet); watching it once it \
                     does{}",
                    dir.display(),
                    beside_the_file(cwd, dir, origin)
                );
                later
            }
            None => return Err(err),
        },
    };
    let url = match url {
        None => "/".to_string(),
        // Not `//`: a browser reads `//cdn.example/x/app.css` as another host's.
        Some(url)
            if url.starts_with('/') && !url.starts_with("//") && !url.contains(['?', '#', ' ']) =>
        {
            format!("{}/", url.trim_end_matches('/'))
        }
        Some(url) => {
            return Err(ConfigError::invalid(
                origin.clone(),
                format!(
                    "URL prefix `{url}` must be a path starting with one /, without `?`, `#` or spaces"
                ),
                format!(
                    "write {}",
                    origin.spelled(
                        "DIR=/prefix, e.g. static=/assets",
                        "static=/assets",
                        "url = \"/assets\"",
                    )
                ),
            ));
        }
    };
    Ok(WatchRoot { dir, url, ignore })
}

/// A route path as browsers put it on the wire, where it is matched: non-ASCII characters
/// percent-encoded as UTF-8 (`/café` is sent as `/caf%C3%A9`), escapes in upper case.
fn as_browsers_send(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        {
            out.push('%');
            out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            i += 3;
            continue;
        }
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

/// A directory that does not exist (nor, maybe, some folders above it) under one that does: the
/// canonical folder above with the names below it.
fn not_yet_made(cwd: &Path, dir: &Path) -> Option<PathBuf> {
    let path = cwd.join(dir);
    if path.symlink_metadata().is_ok() {
        return None;
    }
    // The nearest folder above that exists, and plain names below it (`build/out` before the
    // first build made either; `..` there could not be resolved later the same way).
    let mut missing = Vec::new();
    let mut above = path.as_path();
    // Only past names that are not there: a folder this user may not search is not "not made
    // yet" (its error, naming the fix, is the caller's).
    while let Err(err) = above.symlink_metadata() {
        if err.kind() != std::io::ErrorKind::NotFound {
            return None;
        }
        match above.components().next_back()? {
            std::path::Component::Normal(name) => missing.push(name),
            _ => return None,
        }
        above = above.parent()?;
    }
    let mut later = above.canonicalize().ok()?;
    if !later.is_dir() {
        return None;
    }
    later.extend(missing.iter().rev());
    Some(later)
}

/// A directory that exists, made absolute and canonical (symlinks resolved once, here).
/// For a relative folder from a config file that is not in the working directory, and is next to
/// the file: where relative paths start, and how to name the one meant (`-c proj/hmr-proxy.toml`
/// from the folder above watched `./templates`, not `proj/templates`, and no save ever counted).
fn beside_the_file(cwd: &Path, dir: &Path, origin: &Origin) -> String {
    let Origin::File { path, .. } = origin else {
        return String::new();
    };
    let Some(folder) = path.parent().filter(|_| dir.is_relative()) else {
        return String::new();
    };
    let beside = folder.join(dir);
    if !beside.is_dir() {
        return String::new();
    }
    let named = beside.strip_prefix(cwd).unwrap_or(&beside);
    format!(
        " (relative paths start at the working directory, {}; for the one next to the config \
         file, write `{}`, or start hmr-proxy in {})",
        cwd.display(),
        named.display(),
        folder.display()
    )
}

/// Whether `dir` (canonical) is the user's home folder or the file system's top, said as such:
/// started there by accident (a new terminal), the proxy would serve or watch all of it.
pub fn home_or_top(dir: &Path) -> Option<&'static str> {
    if dir.parent().is_none() {
        return Some("the file system's top");
    }
    let home = std::env::var_os("HOME").and_then(|home| Path::new(&home).canonicalize().ok())?;
    (home == dir).then_some("your home folder")
}

fn existing_dir(cwd: &Path, dir: &Path, origin: &Origin) -> Result<PathBuf, ConfigError> {
    let path = cwd.join(dir);
    match path.canonicalize() {
        // Listing it is what watching and serving it take: a folder this user may not read
        // (a bind mount owned by another uid) would start a proxy that serves 404s and never
        // sees a change.
        Ok(canonical) if canonical.is_dir() => match std::fs::read_dir(&canonical) {
            Ok(_) => Ok(canonical),
            Err(err) => Err(ConfigError::invalid(
                origin.clone(),
                format!("directory `{}` cannot be read ({err})", dir.display()),
                "give this user read and search permission on it (in a container, run as the \
                 files' owner or make the mount readable)",
            )),
        },
        Ok(_) => Err(ConfigError::invalid(
            origin.clone(),
            format!("`{}` is a file, not a directory", dir.display()),
            "name a directory",
        )),
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(ConfigError::invalid(
                origin.clone(),
                format!("directory `{}` cannot be reached ({err})", dir.display()),
                "give this user search permission on the folders above it",
            ))
        }
        // A link whose target is missing is there in `ls`: "create it" would puzzle.
        Err(_) if let Ok(target) = std::fs::read_link(&path) => Err(ConfigError::invalid(
            origin.clone(),
            format!(
                "`{}` is a symbolic link to `{}`, which does not exist",
                dir.display(),
                target.display()
            ),
            "create that folder, or point the link at one that exists",
        )),
        Err(err) => Err(ConfigError::invalid(
            origin.clone(),
            format!("directory `{}` cannot be used ({err})", dir.display()),
            "create it or fix the path (relative paths start at the working directory)",
        )),
    }
}

fn check_globs(globs: &[String], origin: &Origin) -> Result<(), ConfigError> {
    for glob in globs {
        if let Err(err) = globset::Glob::new(glob) {
            return Err(ConfigError::invalid(
                origin.clone(),
                format!("`{glob}` is not a valid glob ({})", err.kind()),
                "write a glob like `*.log` or `dist/**`",
            ));
        }
    }
    Ok(())
}

fn validate_changes_path(raw: Raw<String>) -> Result<String, ConfigError> {
    let path = raw.value;
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.len() < 2 {
        return Err(ConfigError::invalid(
            raw.origin,
            format!("`{path}` is not a URL path"),
            "write a path like /changes",
        ));
    }
    if path.starts_with(OWN_PREFIX) {
        return Err(ConfigError::invalid(
            raw.origin,
            format!("`{path}` is inside the proxy's own {OWN_PREFIX} namespace"),
            "pick a path outside it, like /changes",
        ));
    }
    Ok(path)
}

fn duration_setting(raw: Option<Raw<String>>, default: Duration) -> Result<Duration, ConfigError> {
    match raw {
        Some(raw) => parse_duration(&raw.value)
            .map_err(|(problem, fix)| ConfigError::invalid(raw.origin, problem, fix)),
        None => Ok(default),
    }
}

/// `ADDR:PORT`, `localhost:PORT`, a bare `PORT`, or a bare address (`0.0.0.0`, `[::]`) on
/// [`DEFAULT_PORT`], as Vite's `--host 0.0.0.0` keeps its port.
fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
    if let Ok(ip) = bare.unwrap_or(value).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = value.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(format!("`{value}` is not an address to listen on"))
}

/// Validate an upstream URL; on error returns (problem, fix).
fn parse_upstream(value: &str) -> Result<Upstream, (String, String)> {
    parse_upstream_as(value, true)
}

/// [`parse_upstream`], with a bare port or `host:port` an error that suggests the URL.
fn parse_upstream_strictly(value: &str) -> Result<Upstream, (String, String)> {
    parse_upstream_as(value, false)
}

fn parse_upstream_as(value: &str, lenient: bool) -> Result<Upstream, (String, String)> {
    let value = value.trim();
    let uri: http::Uri = value.parse().map_err(|_| {
        (
            format!("`{value}` is not a URL"),
            "write the dev server's URL, e.g. http://localhost:8000".to_string(),
        )
    })?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err((
                format!("`{value}` has scheme `{other}`"),
                "use an http:// or https:// URL, e.g. http://localhost:8000".to_string(),
            ));
        }
        None => {
            // `localhost:8000` parses as an authority; `8000` as a path. A port, with or without
            // a host, is taken for the http URL meant, as browser-sync's `--proxy` takes it;
            // anything else gets the URL suggested.
            let port = value.strip_prefix(':').unwrap_or(value);
            let digits = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_digit());
            let guess = if digits(port) {
                format!("http://localhost:{port}")
            } else {
                format!("http://{}", value.trim_start_matches('/'))
            };
            let host_and_port = value.rsplit_once(':').is_some_and(|(host, port)| {
                digits(port)
                    && !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c))
            });
            if lenient && (digits(port) || host_and_port) {
                let upstream = parse_upstream(&guess)?;
                tracing::info!("`{value}` taken as {}", upstream.origin());
                return Ok(upstream);
            }
            return Err((format!("`{value}` has no scheme"), format!("write {guess}")));
        }
    };
    let scheme = if tls { "https" } else { "http" };
    let Some(authority) = uri.authority().cloned() else {
        return Err((
            format!("`{value}` has no host"),
            "write e.g. http://localhost:8000".to_string(),
        ));
    };
    if authority.as_str().contains('@') {
        return Err((
            format!("`{value}` carries credentials"),
            "remove the user:password@ part".to_string(),
        ));
    }
    // `http` drops a fragment without a word; it means nothing to an origin, so say so rather
    // than guess what was meant (`http://app:8000/#/admin`: a client-side route?).
    if let Some((origin, _)) = value.split_once('#') {
        return Err((
            format!("`{value}` has a fragment; the upstream is an origin"),
            format!("write {origin}"),
        ));
    }
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return Err((
            format!("`{value}` has a path or query; the upstream is an origin"),
            format!("write {scheme}://{authority} (requests keep their own paths)"),
        ));
    }
    let host = authority.host().to_string();
    if host.is_empty() {
        let port = authority.port_u16().unwrap_or(8000);
        return Err((
            format!("`{value}` has no host"),
            format!("write {scheme}://localhost:{port}"),
        ));
    }
    // What follows the host, if anything, must be a port: `http` reads `:80800` or `:` as no
    // port at all, which made them port 80.
    if let Some(port) = authority.as_str()[host.len()..].strip_prefix(':')
        && !port.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err((
            format!("`{value}` has `{port}` for its port"),
            format!("give a port from 1 to 65535, e.g. {scheme}://{host}:8000"),
        ));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let authority = if authority.port_u16().is_some() {
        authority
    } else {
        // Always carry the port so `Host` and redirects compare the same way.
        format!("{host}:{port}").parse().map_err(|_| {
            (
                format!("`{value}` has an unusable host"),
                "write e.g. http://localhost:8000".to_string(),
            )
        })?
    };
    Ok(Upstream {
        tls,
        host,
        port,
        authority,
    })
}

/// The prefix of every option's environment variable.
const PREFIX: &str = "HMR_PROXY_";

/// Each `HMR_PROXY_` variable in `names` that no option reads, with the real name it is nearest
/// to, if any: one spelt like its config file key (`HMR_PROXY_ALLOWED_HOSTS`,
/// `HMR_PROXY_POLL_INTERVAL`) did nothing and said nothing. One near no option may be another
/// tool's.
fn unknown_variables<'a>(
    command: &clap::Command,
    names: impl Iterator<Item = &'a str>,
) -> Vec<(String, Option<String>)> {
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    let nearest = |name: &str| {
        let short = name.strip_prefix(PREFIX).unwrap_or(name);
        // What other tools name the listen address and the upstream.
        let alias = match short {
            "PORT" | "HOST" | "ADDR" | "ADDRESS" | "BIND" => Some("LISTEN"),
            "URL" | "TARGET" | "PROXY" | "BACKEND" => Some("UPSTREAM"),
            _ => None,
        };
        if let Some(real) = alias {
            return Some(format!("{PREFIX}{real}"));
        }
        let shorts = known
            .iter()
            .filter_map(|k| k.strip_prefix(PREFIX).map(|s| (k, s)));
        // One name inside the other (`POLL_INTERVAL`, `INJECT` of `NO_INJECT`), else a slip of
        // a letter or two: only for names long enough to tell (`LOG` is no slip of `POLL`).
        shorts
            .clone()
            .filter(|(_, s)| short.len() >= 4 && (short.contains(s) || s.contains(short)))
            .max_by_key(|(_, s)| s.len())
            .or_else(|| {
                shorts
                    .map(|(k, s)| (k, s, edit_distance(short, s)))
                    .filter(|(_, _, d)| *d <= short.len().min(12) / 4)
                    .min_by_key(|(_, _, d)| *d)
                    .map(|(k, s, _)| (k, s))
            })
            .map(|(k, _)| k.clone())
    };
    names
        .filter(|name| name.starts_with(PREFIX) && !known.iter().any(|k| k == name))
        .map(|name| (name.to_string(), nearest(name)))
        .collect()
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `--ignore` and HMR_PROXY_IGNORE take several globs at once, split at commas outside braces:
/// `*.{map,log}` is one glob.
fn split_globs(value: &str) -> Vec<String> {
    let mut globs = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                globs.push(value[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    globs.push(value[start..].to_string());
    globs
        .into_iter()
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty())
        .collect()
}

/// The longest duration a setting takes.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// How a bad duration is fixed, unless the problem has a fix of its own.
const DURATION_FIX: &str = "write a duration like 3s, 500ms or 2m";

/// `500ms`, `3s`, `2m`, `1h`: a whole number and a unit. On error returns (problem, fix).
pub fn parse_duration(value: &str) -> Result<Duration, (String, String)> {
    let value = value.trim();
    let problem = |problem: String| (problem, DURATION_FIX.to_string());
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    if let Some(fraction) = unit.strip_prefix('.') {
        return Err((
            format!("`{value}` has a fraction, which durations do not take"),
            match in_smaller_unit(number, fraction) {
                Some(exact) => format!("write {exact}"),
                None => "write a whole number of ms, s, m or h, e.g. 1500ms for 1.5s".to_string(),
            },
        ));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| problem(format!("`{value}` is not a duration")))?;
    let duration = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(60 * 60)),
        "" => return Err(problem(format!("`{value}` has no unit"))),
        other => {
            return Err((
                format!("`{value}` has unknown unit `{other}`"),
                "write a duration in ms, s, m or h, like 3s, 500ms or 2m".to_string(),
            ));
        }
    };
    if duration.is_zero() {
        return Err(problem(format!("`{value}` is zero")));
    }
    // Every duration is added to a clock reading somewhere; one past a day has no use here, and
    // a huge one overflowed the clock and panicked on every connection.
    if duration > MAX_DURATION {
        return Err(problem(format!("`{value}` is longer than a day")));
    }
    Ok(duration)
}

/// `whole.fraction` (`fraction` being what follows the dot, unit included: `5s`) in the next
/// smaller unit, when it is a whole number there: `1.5s` is `1500ms`, `1.5m` is `90s`, `0.5h`
/// is `30m`.
fn in_smaller_unit(whole: &str, fraction: &str) -> Option<String> {
    let digits = fraction
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(fraction.len());
    let (decimals, unit) = fraction.split_at(digits);
    let (name, factor): (&str, u128) = match unit.trim() {
        "s" => ("ms", 1000),
        "m" => ("s", 60),
        "h" => ("m", 60),
        _ => return None,
    };
    // whole.decimals × factor = (whole × 10^k + decimals) × factor / 10^k: whole if it divides.
    let scale = 10u128.checked_pow(u32::try_from(decimals.len()).ok()?)?;
    let parse = |digits: &str| match digits {
        "" => Some(0),
        digits => digits.parse::<u128>().ok(),
    };
    let scaled = parse(whole)?
        .checked_mul(scale)?
        .checked_add(parse(decimals)?)?
        .checked_mul(factor)?;
    (scaled % scale == 0 && scaled > 0).then(|| format!("{}{name}", scaled / scale))
}

/// Milliseconds, bare (`50`) or with the unit (`50ms`).
fn parse_millis(value: &str) -> Result<Duration, String> {
    let digits = value.trim().trim_end_matches("ms");
    let duration = digits
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("`{value}` is not a number of milliseconds"))?;
    if duration > MAX_DURATION {
        return Err(format!("`{value}` is longer than a day"));
    }
    Ok(duration)
}

/// What `--poll`'s value asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    Off,
    /// On, at the interval configured elsewhere (the file's `poll_interval`) or the default.
    On,
    Every(Duration),
}

/// `--poll` (on), `--poll=500` or `--poll=2s`, `--poll=false`.
fn parse_poll(value: &str) -> Result<Poll, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "on" | "yes" | "1" => Ok(Poll::On),
        "false" | "off" | "no" | "0" => Ok(Poll::Off),
        other => match parse_millis(other).or_else(|_| parse_duration(other).map_err(|e| e.0)) {
            Ok(d) if !d.is_zero() => Ok(Poll::Every(d)),
            _ => Err(format!("`{value}` is not a poll interval")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_in(dir: &Path, args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["hmr-proxy"];
        argv.extend_from_slice(args);
        let (cli, matches) = Config::parse_args(argv).map_err(|e| e.to_string())?;
        Config::load(cli, &matches, dir).map_err(|e| e.to_string())
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
    }

    #[test]
    fn a_link_to_a_missing_folder_is_named_as_such() {
        let dir = tmp();
        let target = dir.path().join("build/dist");
        std::os::unix::fs::symlink(&target, dir.path().join("dist"))
            .unwrap_or_else(|e| panic!("symlink: {e}"));
        for args in [&["--watch", "dist"][..], &["--serve", "dist"]] {
            let err = load_in(dir.path(), args).err().unwrap_or_default();
            assert!(
                err.contains("`dist` is a symbolic link to")
                    && err.contains("build/dist`, which does not exist")
                    && err.contains("create that folder, or point the link at one that exists"),
                "{args:?}: {err}"
            );
        }
    }

    #[test]
    fn defaults_serve_the_working_directory() {
        let dir = tmp();
        let cfg = load_in(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.listen,
            "127.0.0.1:3000".parse().unwrap_or_else(|e| panic!("{e}"))
        );
        assert!(matches!(
            cfg.backend,
            Backend::Static { implicit: true, .. }
        ));
        assert_eq!(cfg.changes_path, "/changes");
        assert!(cfg.inject);
        assert_eq!(cfg.watch.roots.len(), 1);
        assert_eq!(cfg.watch.debounce, DEFAULT_DEBOUNCE);
        assert_eq!(cfg.watch.poll, None);
    }

    #[test]
    fn a_poll_interval_without_its_equals_sign_is_named() {
        let err = load_in(tmp().path(), &["--poll", "500"])
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("write --poll=500 for a poll interval"),
            "{err}"
        );
    }

    #[test]
    fn a_value_after_a_space_is_named_with_the_fix() {
        for (args, fix) in [
            (
                &["--poll", "500", "http://localhost:8000"][..],
                "write --poll=500",
            ),
            (
                &["--open", "/admin", "http://localhost:8000"],
                "write --open=/admin",
            ),
            (
                &["http://localhost:8000", "--no-inject", "true"],
                "write --no-inject=true",
            ),
        ] {
            let err = load_in(tmp().path(), args).err().unwrap_or_default();
            assert!(err.contains(fix), "{args:?}: {err}");
            assert!(err.contains("takes its value after `=`"), "{args:?}: {err}");
        }
        // Without such a flag, clap's own words.
        let err = load_in(
            tmp().path(),
            &["http://localhost:8000", "http://localhost:9000"],
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("unexpected argument"), "{err}");
        assert!(!err.contains("takes its value"), "{err}");
        // A flag that takes its value after a space is no such mistake.
        let err = load_in(tmp().path(), &["--debounce", "20", "a", "b"])
            .err()
            .unwrap_or_default();
        assert!(!err.contains("takes its value"), "{err}");
    }

    #[test]
    fn a_bare_port_or_host_and_port_is_taken_for_the_http_url() {
        for (given, origin) in [
            ("8000", "http://localhost:8000"),
            (":8000", "http://localhost:8000"),
            ("localhost:8000", "http://localhost:8000"),
            ("web:3000", "http://web:3000"),
            ("[::1]:5173", "http://[::1]:5173"),
        ] {
            let cfg = load_in(tmp().path(), &[given]).unwrap_or_else(|e| panic!("{given}: {e}"));
            let Backend::Upstream(up) = cfg.backend else {
                panic!("{given}: not an upstream")
            };
            assert_eq!(up.origin(), origin, "{given}");
        }
        // Anything else still gets the URL suggested.
        let err = load_in(tmp().path(), &["/app"]).err().unwrap_or_default();
        assert_eq!(err, "UPSTREAM: `/app` has no scheme; write http://app");
        // A folder by that name is meant to be served.
        let dir = tmp();
        std::fs::create_dir(dir.path().join("8000")).unwrap_or_else(|e| panic!("{e}"));
        let err = load_in(dir.path(), &["8000"]).err().unwrap_or_default();
        assert!(err.contains("write --serve 8000"), "{err}");
    }

    #[test]
    fn unknown_variables_are_named_with_the_nearest_real_one() {
        let warnings = unknown_variables(
            &Cli::command(),
            [
                "HMR_PROXY_ALLOWED_HOSTS",
                "HMR_PROXY_INJECT",
                "HMR_PROXY_POLL_INTERVAL",
                "HMR_PROXY_WHATEVER",
                "HMR_PROXY_LISTEN",
                "PATH",
                "HMR_PROXY_PORT",
                "HMR_PROXY_LOG",
                "HMR_PROXY_X",
            ]
            .into_iter(),
        );
        let nearest: Vec<Option<&str>> = warnings.iter().map(|(_, n)| n.as_deref()).collect();
        assert_eq!(
            nearest,
            [
                Some("HMR_PROXY_ALLOWED_HOST"),
                Some("HMR_PROXY_NO_INJECT"),
                Some("HMR_PROXY_POLL"),
                None,
                Some("HMR_PROXY_LISTEN"),
                None,
                None,
            ],
            "{warnings:?}"
        );
    }

    #[test]
    fn upstream_forms() {
        let cfg = load_in(tmp().path(), &["http://app"]).unwrap_or_else(|e| panic!("{e}"));
        let Backend::Upstream(up) = cfg.backend else {
            panic!("not an upstream")
        };
        assert_eq!(up.origin(), "http://app:80");
        let Backend::Upstream(up) = load_in(tmp().path(), &["https://app"]).expect("ok").backend
        else {
            panic!("not an upstream")
        };
        assert!(up.tls);
        assert_eq!(up.origin(), "https://app:443");
        for bad in ["ftp://x", "http://x:1/app", "http://u:p@x:1"] {
            assert!(load_in(tmp().path(), &[bad]).is_err(), "{bad} accepted");
        }
        let err = load_in(tmp().path(), &["http://x:1/#/admin"])
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("`http://x:1/#/admin` has a fragment")
                && err.contains("write http://x:1/"),
            "{err}"
        );
        // No host: it started, and every request was a 502 for a name that does not resolve.
        let err = load_in(tmp().path(), &["http://:4438"])
            .err()
            .unwrap_or_default();
        assert!(err.ends_with("write http://localhost:4438"), "{err}");
        let err = load_in(
            tmp().path(),
            &["--route", "/api=http://:9000", "http://app"],
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("has no host"), "{err}");
        // A port `http` cannot read is no port at all to it: it was taken for 80.
        for bad in [
            "http://localhost:80800",
            "http://localhost:",
            "http://[::1]:0",
        ] {
            let err = load_in(tmp().path(), &[bad]).err().unwrap_or_default();
            assert!(err.contains("give a port from 1 to 65535"), "{bad}: {err}");
        }
        let err = load_in(
            tmp().path(),
            &["--route", "/api=http://localhost:123456", "http://app"],
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("`123456` for its port"), "{err}");
        let cfg = load_in(tmp().path(), &["http://[::1]:8000"]).unwrap_or_else(|e| panic!("{e}"));
        let Backend::Upstream(up) = cfg.backend else {
            panic!("not an upstream")
        };
        assert_eq!(up.port, 8000);
    }

    #[test]
    fn listen_forms_and_errors() {
        let dir = tmp();
        let cfg = load_in(dir.path(), &["-l", "4000"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.listen.port(), 4000);
        let cfg = load_in(dir.path(), &["-l", "0.0.0.0:80"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.listen.ip().is_unspecified());
        // A bare address keeps the default port.
        for bare in ["0.0.0.0", "[::]", "::1", "192.168.1.5"] {
            let cfg = load_in(dir.path(), &["-l", bare]).unwrap_or_else(|e| panic!("{bare}: {e}"));
            assert_eq!(cfg.listen.port(), DEFAULT_PORT, "{bare}");
        }
        let err = load_in(dir.path(), &["--listen", "nowhere"])
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("--listen: `nowhere` is not an address"),
            "{err}"
        );
        assert!(err.contains("127.0.0.1:3000"), "{err}");
    }

    #[test]
    fn missing_directories_name_the_flag() {
        let dir = tmp();
        let err = load_in(dir.path(), &["--serve", "nope"])
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("--serve: directory `nope` cannot be used"),
            "{err}"
        );
        // A folder to watch may come later (a build's output), with folders above it too; one
        // that goes up from a folder not made yet cannot be told where it will be.
        let canonical = dir.path().canonicalize().expect("canonical");
        for (later, want) in [("later", "later"), ("build/out", "build/out")] {
            let cfg = load_in(dir.path(), &["-w", &format!("{later}=/x")])
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cfg.watch.roots[0].dir, canonical.join(want));
        }
        let err = load_in(dir.path(), &["-w", "nope/../x=/x"])
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("--watch: directory `nope/../x`"), "{err}");
    }

    #[test]
    fn upstream_and_serve_conflict() {
        let err = load_in(tmp().path(), &["--serve", ".", "http://localhost:1"])
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("UPSTREAM and --serve cannot be used together"),
            "{err}"
        );
    }

    #[test]
    fn a_stronger_layers_serve_or_upstream_wins_over_the_others() {
        let dir = tmp();
        std::fs::create_dir(dir.path().join("public")).unwrap_or_else(|e| panic!("{e}"));
        let config = dir.path().join("hmr-proxy.toml");
        // The file fronts a dev server; a flag serves a folder instead.
        std::fs::write(&config, "upstream = \"http://localhost:8000\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &["--serve", "public"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(cfg.backend, Backend::Static { ref root, implicit: false, .. } if root.ends_with("public")),
            "{:?}",
            cfg.backend
        );
        // The file serves a folder; the UPSTREAM argument fronts a dev server instead.
        std::fs::write(&config, "serve = \"public\"\n").unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &["http://localhost:9000"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(cfg.backend, Backend::Upstream(ref u) if u.port == 9000),
            "{:?}",
            cfg.backend
        );
        // One layer giving both is still a conflict, blamed on that layer.
        std::fs::write(
            &config,
            "upstream = \"http://localhost:8000\"\nserve = \"public\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = load_in(dir.path(), &[]).err().unwrap_or_default();
        assert!(
            err.contains("key `upstream` and")
                && err.contains("key `serve` cannot be used together"),
            "{err}"
        );
        // ... unless a stronger layer decides.
        let cfg = load_in(dir.path(), &["--serve", "."]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(cfg.backend, Backend::Static { .. }));
    }

    #[test]
    fn watch_prefixes_and_globs() {
        let dir = tmp();
        std::fs::create_dir(dir.path().join("static")).unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &["-w", "static=/assets", "-w", "."])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.roots[0].url, "/assets/");
        assert_eq!(cfg.watch.roots[1].url, "/");
        // A list with spaces after its commas, as written in a compose file.
        let cfg = load_in(dir.path(), &["-w", " . , static = /assets "])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.roots[0].url, "/");
        assert_eq!(cfg.watch.roots[1].url, "/assets/");
        let err = load_in(dir.path(), &["-w", "static=assets"])
            .err()
            .unwrap_or_default();
        assert!(err.contains("must be a path starting with one /"), "{err}");
        let err = load_in(dir.path(), &["-w", "static=//cdn.example/x"])
            .err()
            .unwrap_or_default();
        assert!(err.contains("must be a path starting with one /"), "{err}");
        // A prefix with no folder before it is no default folder.
        let err = load_in(dir.path(), &["-w", "=/assets"])
            .err()
            .unwrap_or_default();
        assert!(err.contains("--watch: `=/assets` names no folder"), "{err}");
        // An empty list from the environment leaves the config file's folders in place.
        std::fs::write(
            dir.path().join("hmr-proxy.toml"),
            "[[watch]]\ndir = \"static\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &["-w", ""]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.roots.len(), 1);
        assert!(cfg.watch.roots[0].dir.ends_with("static"));
        std::fs::remove_file(dir.path().join("hmr-proxy.toml")).unwrap_or_else(|e| panic!("{e}"));
        for prefix in ["static=/a#b", "static=/a?b", "static=/a b"] {
            let err = load_in(dir.path(), &["-w", prefix])
                .err()
                .unwrap_or_default();
            assert!(
                err.contains("without `?`, `#` or spaces"),
                "{prefix}: {err}"
            );
        }
        let err = load_in(dir.path(), &["--ignore", "a[b"])
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("--ignore: `a[b` is not a valid glob"),
            "{err}"
        );
        // Commas split globs, but not inside braces.
        let cfg = load_in(
            dir.path(),
            &["--ignore", "*.{map,log}, tmp/", "--ignore", "x"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.ignore, ["*.{map,log}", "tmp/", "x"]);
    }

    #[test]
    fn durations_poll_debounce_changes_path() {
        let dir = tmp();
        let cfg = load_in(
            dir.path(),
            &[
                "--poll=500",
                "--debounce",
                "80",
                "--connect-timeout",
                "500ms",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.poll, Some(Duration::from_millis(500)));
        assert_eq!(cfg.watch.debounce, Duration::from_millis(80));
        assert_eq!(cfg.proxy.connect_timeout, Duration::from_millis(500));
        let cfg = load_in(dir.path(), &["--poll"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.poll, Some(DEFAULT_POLL_INTERVAL));
        let cfg = load_in(dir.path(), &["--poll=2s"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.poll, Some(Duration::from_secs(2)));
        // A bare `--poll` takes the file's interval: the file says how, the flag says to.
        std::fs::write(
            dir.path().join("hmr-proxy.toml"),
            "poll = false\npoll_interval = 700\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &["--poll"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.poll, Some(Duration::from_millis(700)));
        let cfg = load_in(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.poll, None);
        std::fs::remove_file(dir.path().join("hmr-proxy.toml")).unwrap_or_else(|e| panic!("{e}"));
        // Empty: no setting, as an empty HMR_PROXY_POLL is.
        let cfg = load_in(dir.path(), &["--poll="]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.poll, None);
        for (args, needle) in [
            (
                &["--poll=soon"][..],
                "--poll: `soon` is not a poll interval",
            ),
            (
                &["--debounce", "fast"][..],
                "--debounce: `fast` is not a number",
            ),
            (
                &["--response-timeout", "10"][..],
                "--response-timeout: `10` has no unit",
            ),
            (
                &["--changes-path", "changes"][..],
                "--changes-path: `changes` is not a URL path",
            ),
            (&["--changes-path", "/__hmr/x"][..], "own /__hmr/ namespace"),
            // Added to a clock reading, a huge one overflowed it on every connection.
            (
                &["--heartbeat", "18446744073709551615s"][..],
                "--heartbeat: `18446744073709551615s` is longer than a day",
            ),
            (
                &["--header-timeout", "25h"][..],
                "--header-timeout: `25h` is longer than a day",
            ),
            (
                &["--connect-timeout", "1.5s"][..],
                "--connect-timeout: `1.5s` has a fraction, which durations do not take; write 1500ms",
            ),
            (
                &["--heartbeat", "5d"][..],
                "--heartbeat: `5d` has unknown unit `d`; write a duration in ms, s, m or h",
            ),
            (
                &["--debounce", "18446744073709551615"][..],
                "--debounce: `18446744073709551615` is longer than a day",
            ),
            (
                &["--poll=99999999999"][..],
                "--poll: `99999999999` is not a poll interval",
            ),
        ] {
            let err = load_in(dir.path(), args).err().unwrap_or_default();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn file_layer_sits_below_flags() {
        let dir = tmp();
        std::fs::write(
            dir.path().join("hmr-proxy.toml"),
            "upstream = \"http://localhost:9999\"\nlisten = \"4100\"\ninject = false\n\
             debounce = 70\npoll_interval = 600\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.listen.port(), 4100);
        assert!(!cfg.inject);
        assert_eq!(cfg.watch.debounce, Duration::from_millis(70));
        assert_eq!(cfg.watch.poll, Some(Duration::from_millis(600)));
        assert!(matches!(cfg.backend, Backend::Upstream(ref u) if u.port == 9999));

        let cfg = load_in(
            dir.path(),
            &["-l", "4200", "--no-inject=false", "http://x:1"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.listen.port(), 4200);
        assert!(cfg.inject);
        assert!(matches!(cfg.backend, Backend::Upstream(ref u) if u.port == 1));
    }

    #[test]
    fn bad_file_value_names_file_and_key() {
        let dir = tmp();
        std::fs::write(dir.path().join("hmr-proxy.toml"), "listen = \"here\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = load_in(dir.path(), &[]).err().unwrap_or_default();
        assert!(
            err.contains("hmr-proxy.toml: key `listen`: `here` is not an address"),
            "{err}"
        );
    }

    #[test]
    fn explicit_config_file_must_exist() {
        let err = load_in(tmp().path(), &["-c", "missing.toml"])
            .err()
            .unwrap_or_default();
        assert!(err.contains("missing.toml"), "{err}");
        assert!(err.contains("--config"), "{err}");
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../config/hmr-proxy.toml");
        file::parse(Path::new("config/hmr-proxy.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The example says it shows the defaults: copied as it is, it changes nothing, and a
    /// commented key taken in does what its comment says.
    #[test]
    fn the_example_config_as_it_is_gives_the_defaults() {
        let text = include_str!("../../config/hmr-proxy.toml");
        let dir = tmp();
        let defaults = load_in(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("hmr-proxy.toml"), text).unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.file.is_some());
        assert_eq!(cfg.listen, defaults.listen);
        // Set at all, even to the default, the address would no longer move off a taken port.
        assert!(cfg.listen_origin.is_none(), "{:?}", cfg.listen_origin);
        assert!(
            matches!(cfg.backend, Backend::Static { implicit: true, .. }),
            "{:?}",
            cfg.backend
        );
        assert!(cfg.routes.is_empty());
        assert_eq!(cfg.watch.roots, defaults.watch.roots);
        assert_eq!(cfg.watch.ignore, defaults.watch.ignore);
        assert_eq!(cfg.watch.debounce, defaults.watch.debounce);
        assert_eq!(cfg.watch.poll, defaults.watch.poll);
        assert_eq!(cfg.changes_path, defaults.changes_path);
        assert_eq!(cfg.heartbeat, defaults.heartbeat);
        assert_eq!(cfg.inject, defaults.inject);
        assert_eq!(cfg.shutdown_grace, defaults.shutdown_grace);
        assert_eq!(cfg.header_timeout, defaults.header_timeout);
        assert_eq!(cfg.allowed_hosts, defaults.allowed_hosts);
        assert_eq!(cfg.max_connections, defaults.max_connections);
        assert_eq!(cfg.proxy.keep_host, defaults.proxy.keep_host);
        assert_eq!(cfg.proxy.connect_timeout, defaults.proxy.connect_timeout);
        assert_eq!(cfg.proxy.response_timeout, defaults.proxy.response_timeout);
        // `--serve public` works with the example in place (its upstream is commented out).
        std::fs::create_dir(dir.path().join("public")).unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &["--serve", "public"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            cfg.backend,
            Backend::Static {
                implicit: false,
                ..
            }
        ));
        // Uncommenting the interval turns polling on: no `poll = false` stops it.
        let uncommented = text.replace("# poll_interval = 250", "poll_interval = 500");
        assert_ne!(uncommented, text, "the example has `# poll_interval = 250`");
        std::fs::write(dir.path().join("hmr-proxy.toml"), uncommented)
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.poll, Some(Duration::from_millis(500)));
    }

    #[test]
    fn routes_from_flags_and_file() {
        let dir = tmp();
        // A route of the file's on the change stream's path is blamed on the file.
        std::fs::write(
            dir.path().join("hmr-proxy.toml"),
            "[[route]]\npath = \"/changes\"\nupstream = \"http://localhost:1\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = load_in(dir.path(), &["http://app"])
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("hmr-proxy.toml: key `route`: route `/changes`"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("hmr-proxy.toml")).unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(
            dir.path(),
            &[
                "--route",
                "/api=http://localhost:8080",
                "--route",
                "/api/v2/=http://localhost:8081",
                "http://localhost:5173",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let prefixes: Vec<&str> = cfg.routes.iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/api/v2", "/api"]);
        assert!(cfg.routes[1].matches("/api"));
        assert!(cfg.routes[1].matches("/api/users?x=1"));
        assert!(!cfg.routes[1].matches("/apix"));
        assert_eq!(cfg.upstreams().len(), 3);

        // Matched as browsers send paths: non-ASCII percent-encoded, escapes in upper case.
        for path in ["/café", "/caf%c3%a9", "/caf%C3%A9"] {
            let cfg = load_in(
                dir.path(),
                &[
                    "--route",
                    &format!("{path}=http://localhost:8080"),
                    "http://x:1",
                ],
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cfg.routes[0].prefix, "/caf%C3%A9", "{path}");
            assert!(cfg.routes[0].matches("/caf%C3%A9/menu"), "{path}");
            assert!(cfg.routes[0].matches("/caf%c3%a9/menu"), "{path}");
            assert!(!cfg.routes[0].matches("/caf%c3%a8/menu"), "{path}");
        }

        std::fs::write(
            dir.path().join("hmr-proxy.toml"),
            "[[route]]\npath = \"/api\"\nupstream = \"http://localhost:8080\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.routes.len(), 1);
        assert!(matches!(cfg.backend, Backend::Static { .. }));

        for (args, needle) in [
            (
                &["--route", "api=http://x:1"][..],
                "--route: route path `api` is not a URL path",
            ),
            (&["--route", "/api"][..], "--route: `/api` is not PATH=URL"),
            (
                &["--route", "/api=ftp://x:1"][..],
                "--route: `ftp://x:1` has scheme `ftp`",
            ),
            (
                &["--route", "/__hmr/x=http://x:1"][..],
                "own /__hmr/ namespace",
            ),
            (
                &["--route", "/changes=http://x:1"][..],
                "change stream's path",
            ),
        ] {
            let err = load_in(dir.path(), args).err().unwrap_or_default();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn allowed_hosts_and_max_connections() {
        let dir = tmp();
        let cfg = load_in(dir.path(), &["--allowed-host", "App.Test,.example.test"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.allowed_hosts,
            AllowedHosts::Names(vec!["app.test".into(), ".example.test".into()])
        );
        let cfg = load_in(dir.path(), &["--allowed-host", "all"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.allowed_hosts, AllowedHosts::All);
        assert_eq!(
            load_in(dir.path(), &[]).map(|c| c.max_connections),
            Ok(DEFAULT_MAX_CONNECTIONS)
        );
        let err = load_in(dir.path(), &["--allowed-host", "http://app.test:3000"])
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("--allowed-host: `http://app.test:3000` is not a host name"),
            "{err}"
        );
        let err = load_in(dir.path(), &["--max-connections", "0"])
            .err()
            .unwrap_or_default();
        assert!(err.contains("--max-connections"), "{err}");
    }

    #[test]
    fn duration_parser() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("0h").is_err());
    }

    /// A folder or a page given where the upstream goes is named with the flag it needs.
    #[test]
    fn a_folder_or_page_for_the_upstream_names_the_flag() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("site")).unwrap_or_else(|e| panic!("{e}"));
        for (args, want) in [
            (&["site"][..], "write --serve site"),
            (&["."][..], "write --serve ."),
            (&["--open", "/about/"][..], "write --open=/about/"),
        ] {
            let err = load_in(dir.path(), args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    /// `--spa` is for a served folder (flag, environment or file); with an upstream, the dev
    /// server answers its own routes, and the flag is a mistake named with its fix.
    #[test]
    fn spa_is_for_a_served_folder() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spa = |cfg: &Config| matches!(cfg.backend, Backend::Static { spa: true, .. });
        let cfg = load_in(dir.path(), &["--spa"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(spa(&cfg));
        let cfg = load_in(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!spa(&cfg));
        let err = load_in(dir.path(), &["--spa", "http://localhost:8000"])
            .err()
            .unwrap_or_else(|| panic!("--spa with an upstream was accepted"));
        assert!(err.contains("--spa") && err.contains("drop it"), "{err}");
        let cfg = load_in(dir.path(), &["--spa=false", "http://localhost:8000"]);
        assert!(cfg.is_ok(), "{cfg:?}");
        std::fs::write(dir.path().join("hmr-proxy.toml"), "spa = true\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = load_in(dir.path(), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(spa(&cfg));
    }

    #[test]
    fn a_fractional_duration_is_refused_with_the_whole_one_to_write() {
        let fix = |value: &str| match parse_duration(value) {
            Ok(d) => panic!("{value} accepted as {d:?}"),
            Err((problem, fix)) => {
                assert_eq!(
                    problem,
                    format!("`{value}` has a fraction, which durations do not take")
                );
                fix
            }
        };
        assert_eq!(fix("1.5s"), "write 1500ms");
        assert_eq!(fix("0.5s"), "write 500ms");
        assert_eq!(fix(".25s"), "write 250ms");
        assert_eq!(fix("1.5m"), "write 90s");
        assert_eq!(fix("0.5h"), "write 30m");
        // Not a whole number one unit down, or no unit below: the rule and an example.
        for value in ["1.0001s", "1.5ms", "2.5", "1.5x"] {
            assert!(fix(value).contains("e.g. 1500ms for 1.5s"), "{value}");
        }
        // The unit a duration may have is named, not the part after the number.
        let (problem, fix) = parse_duration("5d").err().unwrap_or_default();
        assert_eq!(problem, "`5d` has unknown unit `d`");
        assert!(fix.contains("ms, s, m or h"), "{fix}");
    }
}
