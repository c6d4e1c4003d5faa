//! `--open`: the proxy's page opened in the developer's browser once the proxy listens.
//!
//! Owns which command opens a URL and how its failure is told. The command is `BROWSER`'s when
//! that is set, as Vite, Python's `webbrowser` and `xdg-open` itself read it (`none` opens
//! nothing; a `%s` in it stands for the URL; of a `:`-separated list, the first), else the
//! system's opener. Nothing here can stop the proxy: a browser that cannot be opened is a warning
//! that says where to browse. It does not decide the URL (`lib.rs` does, from the listen address).

use std::process::{Command, Stdio};

/// Open `url` without waiting for the browser: the command is waited for on a thread of its
/// own (`xdg-open` may not return until a first browser window closes).
pub fn open(url: String) {
    let browser = std::env::var("BROWSER")
        .ok()
        .filter(|value| !value.trim().is_empty());
    if browser
        .as_deref()
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("none"))
    {
        tracing::info!("BROWSER=none: not opening a browser; browse {url}");
        return;
    }
    let argv = match &browser {
        Some(value) => from_variable(value, &url),
        None => system_opener(&url),
    };
    let Some((program, args)) = argv.split_first() else {
        tracing::warn!("BROWSER names no command; browse {url}");
        return;
    };
    let shown = program.clone();
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(
                "cannot open a browser with `{shown}` ({err}); browse {url}, or set BROWSER \
                 to the command that opens one"
            );
            return;
        }
    };
    let waiter = std::thread::Builder::new()
        .name("open-browser".into())
        .spawn(move || match child.wait() {
            Ok(status) if status.success() => {
                tracing::info!("opened {url} in the browser");
            }
            Ok(status) => tracing::warn!(
                "`{shown}` could not open {url} ({status}); browse it yourself, or set BROWSER \
                 to the command that opens a browser"
            ),
            Err(err) => tracing::warn!("waiting for `{shown}` failed: {err}; browse {url}"),
        });
    if let Err(err) = waiter {
        tracing::warn!("cannot wait for the browser command: {err}");
    }
}

/// `BROWSER`'s command for `url`: the first of a `:`-separated list, split at spaces, with `%s`
/// replaced by the URL where it appears and the URL appended where it does not.
fn from_variable(value: &str, url: &str) -> Vec<String> {
    let first = value.split(':').find(|part| !part.trim().is_empty());
    let mut argv: Vec<String> = first
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if argv.iter().any(|arg| arg.contains("%s")) {
        for arg in &mut argv {
            *arg = arg.replace("%s", url);
        }
    } else if !argv.is_empty() {
        argv.push(url.to_string());
    }
    argv
}

/// The system's own way to open a URL in the default browser.
fn system_opener(url: &str) -> Vec<String> {
    let program: &[&str] = if cfg!(target_os = "macos") {
        &["open"]
    } else if cfg!(windows) {
        &["cmd", "/C", "start", ""]
    } else {
        &["xdg-open"]
    };
    program
        .iter()
        .map(|part| part.to_string())
        .chain([url.to_string()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_variable_forms() {
        let url = "http://127.0.0.1:3000/";
        assert_eq!(from_variable("firefox", url), ["firefox", url]);
        assert_eq!(
            from_variable("chromium --new-window", url),
            ["chromium", "--new-window", url]
        );
        assert_eq!(from_variable("w3m %s -dump", url), ["w3m", url, "-dump"]);
        assert_eq!(from_variable("firefox:chromium", url), ["firefox", url]);
        assert_eq!(from_variable(":", url), Vec::<String>::new());
    }
}
