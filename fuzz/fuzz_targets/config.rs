//! Configuration from random command lines, environments and config files: never a panic.
//!
//! Input: NUL-separated segments, read as UTF-8 (lossily). The first is a config file's text,
//! parsed with `config::file::parse` and, when not empty, written to `./hmr-proxy.toml` in a
//! scratch working directory. Each further segment is an environment variable when it looks like
//! `$<digit>=value` (the digit picks an `HMR_PROXY_*` name), else a command-line argument. Then
//! `Config::parse_args` and `Config::load` run on it all; errors are fine, panics are not.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

/// Every variable the CLI reads.
const ENV: [&str; 19] = [
    "HMR_PROXY_UPSTREAM",
    "HMR_PROXY_LISTEN",
    "HMR_PROXY_SERVE",
    "HMR_PROXY_CHANGES_PATH",
    "HMR_PROXY_HEARTBEAT",
    "HMR_PROXY_NO_INJECT",
    "HMR_PROXY_SHUTDOWN_GRACE",
    "HMR_PROXY_HEADER_TIMEOUT",
    "HMR_PROXY_ALLOWED_HOST",
    "HMR_PROXY_MAX_CONNECTIONS",
    "HMR_PROXY_KEEP_HOST",
    "HMR_PROXY_CONNECT_TIMEOUT",
    "HMR_PROXY_RESPONSE_TIMEOUT",
    "HMR_PROXY_ROUTE",
    "HMR_PROXY_WATCH",
    "HMR_PROXY_IGNORE",
    "HMR_PROXY_DEBOUNCE",
    "HMR_PROXY_POLL",
    "HMR_PROXY_CONFIG",
];

/// The scratch working directory, with a folder to serve and watch.
static CWD: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("scratch directory");
    std::fs::create_dir(dir.path().join("public")).expect("public/");
    dir
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut segments = text.split('\0');
    let file = segments.next().unwrap_or_default();
    let mut args = vec!["hmr-proxy".to_string()];
    let mut env = Vec::new();
    for segment in segments {
        let picked = segment
            .strip_prefix('$')
            .and_then(|rest| rest.split_once('='))
            .and_then(|(n, value)| Some((ENV.get(n.parse::<usize>().ok()?)?, value)));
        match picked {
            Some((name, value)) => env.push((*name, value.to_string())),
            None => args.push(segment.to_string()),
        }
    }
    // Device and kernel files would make `--config` read for ever: not what this is about.
    let special = |s: &str| ["/dev", "/proc", "/sys"].iter().any(|p| s.contains(p));
    if args.iter().any(|a| special(a)) || env.iter().any(|(_, v)| special(v)) {
        return;
    }

    let _ = hmr_proxy::config::file::parse(Path::new("hmr-proxy.toml"), file);

    let cwd = CWD.path();
    let config_file = cwd.join("hmr-proxy.toml");
    if file.is_empty() {
        let _ = std::fs::remove_file(&config_file);
    } else {
        std::fs::write(&config_file, file).expect("write the config file");
    }
    for name in ENV {
        // SAFETY: libFuzzer runs the target on one thread; nothing else reads the environment.
        unsafe { std::env::remove_var(name) };
    }
    for (name, value) in &env {
        // SAFETY: as above.
        unsafe { std::env::set_var(name, value) };
    }
    if let Ok((cli, matches)) = hmr_proxy::Config::parse_args(&args) {
        let _ = hmr_proxy::Config::load(cli, &matches, cwd);
    }
});
