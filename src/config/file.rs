//! The config file: its serde model and where it is found.
//!
//! Owns [`FileConfig`], a field-for-field image of `config/hmr-proxy.toml` in which every key is
//! optional and unknown keys are errors (a typo must never be silently ignored), and [`locate`],
//! which picks `--config` or `./hmr-proxy.toml`. It does not validate values; `config::mod` does,
//! so a bad value from the file gets the same checks and messages as one from a flag.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ConfigError;

/// The file read by default from the working directory.
pub const DEFAULT_FILE: &str = "hmr-proxy.toml";

/// Every key the config file may hold; see `config/hmr-proxy.toml` for the commented example.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub upstream: Option<String>,
    pub listen: Option<String>,
    pub serve: Option<PathBuf>,
    pub changes_path: Option<String>,
    pub heartbeat: Option<String>,
    pub inject: Option<bool>,
    pub shutdown_grace: Option<String>,
    pub header_timeout: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub keep_host: Option<bool>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub watch: Option<Vec<WatchTable>>,
    pub route: Option<Vec<RouteTable>>,
    pub ignore: Option<Vec<String>>,
    pub debounce: Option<u64>,
    pub poll: Option<bool>,
    pub poll_interval: Option<u64>,
}

/// One `[[watch]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchTable {
    pub dir: PathBuf,
    pub url: Option<String>,
    #[serde(default)]
    pub ignore: Vec<String>,
}

/// One `[[route]]` table: requests under `path` go to `upstream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub path: String,
    pub upstream: String,
}

/// The config file to read: the one named explicitly (which must exist), else `./hmr-proxy.toml`
/// when present, else none.
pub fn locate(explicit: Option<&Path>, cwd: &Path) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(cwd.join(path)),
        None => {
            let default = cwd.join(DEFAULT_FILE);
            default.is_file().then_some(default)
        }
    }
}

/// Read and parse a config file; errors name the file, the line and the fix.
pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::FileUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parse config text (separate from [`read`] so tests need no files).
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|err| {
        let line = err
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let detail = err.message().trim().to_string();
        let fix = if detail.starts_with("unknown field") {
            "fix the key's spelling or remove it (config/hmr-proxy.toml lists every key)"
        } else {
            "fix the value (config/hmr-proxy.toml shows each key's type)"
        };
        ConfigError::FileSyntax {
            path: path.to_path_buf(),
            line,
            detail,
            fix: fix.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = parse(Path::new("x.toml"), "listen = \"3000\"\nlisten_addr = 1\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("x.toml line 2"), "{err}");
        assert!(err.contains("unknown field `listen_addr`"), "{err}");
        assert!(err.contains("fix the key's spelling"), "{err}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let err = parse(Path::new("x.toml"), "debounce = \"fast\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("fix the value"), "{err}");
    }

    #[test]
    fn watch_tables() {
        let cfg = parse(
            Path::new("x.toml"),
            "[[watch]]\ndir = \"static\"\nurl = \"/assets\"\n[[watch]]\ndir = \"templates\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let watch = cfg.watch.unwrap_or_default();
        assert_eq!(watch.len(), 2);
        assert_eq!(watch[0].url.as_deref(), Some("/assets"));
    }
}
