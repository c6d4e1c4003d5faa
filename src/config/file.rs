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
    pub spa: Option<bool>,
    pub changes_path: Option<String>,
    pub heartbeat: Option<String>,
    pub inject: Option<bool>,
    pub shutdown_grace: Option<String>,
    pub header_timeout: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub keep_host: Option<bool>,
    pub insecure: Option<bool>,
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
        let mut detail = plain_words(err.message().trim());
        let key = err.span().and_then(|span| key_at(text, span.start));
        // `poll = 500`: the file spells HMR_PROXY_POLL=500 as two keys, and the number meant
        // the other one.
        let poll_ms = (key == Some("poll"))
            .then(|| {
                detail
                    .strip_prefix("invalid type: integer `")?
                    .split_once('`')
            })
            .flatten()
            .map(|(ms, _)| ms.to_string());
        let table = err.span().and_then(|span| table_above(text, span.start));
        let fix = if let (true, Some(key), Some(table)) =
            (detail.starts_with("unknown key"), key, table)
            && is_top_level(key)
        {
            format!(
                "`{key}` is a top-level key, and TOML reads every key after `[[{table}]]` as part \
                 of that table: move it above the first `[[…]]` table"
            )
        } else if let Some((unknown, nearest)) = misspelt(&detail) {
            detail = format!("unknown key `{unknown}`");
            format!("did you mean `{nearest}`?")
        } else if detail.starts_with("unknown key") {
            "fix the key's spelling or remove it (config/hmr-proxy.toml lists every key)"
                .to_string()
        } else if let Some(ms) = poll_ms {
            detail = format!("`poll`: {detail}");
            format!(
                "for a poll interval write `poll_interval = {ms}` (milliseconds; it turns polling \
                 on), or `poll = true` for the default interval"
            )
        } else if let Some((key, example)) = key.and_then(|key| Some((key, example_of(key)?))) {
            detail = format!("`{key}`: {detail}");
            format!("write it as in {example}; config/hmr-proxy.toml shows every key")
        } else {
            "fix the value (config/hmr-proxy.toml shows each key's type)".to_string()
        };
        ConfigError::FileSyntax {
            path: path.to_path_buf(),
            line,
            detail,
            fix,
        }
    })
}

/// serde's message in the file's words: `expected u64` and `expected struct WatchTable` named
/// Rust types, which a config file's writer never sees.
fn plain_words(message: &str) -> String {
    [
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected struct WatchTable", "expected a [[watch]] table"),
        ("expected struct RouteTable", "expected a [[route]] table"),
        ("expected a sequence", "expected a list"),
        ("invalid type: map", "invalid type: table"),
        ("invalid type: sequence", "invalid type: list"),
        ("unknown field", "unknown key"),
    ]
    .iter()
    .fold(message.to_string(), |text, (rust, words)| {
        text.replace(rust, words)
    })
}

/// An unknown key close to one serde listed (`unknown key `lisen`, expected one of `upstream`,
/// `listen`, …`): it and the nearest, as a misspelt flag or variable is answered.
fn misspelt(detail: &str) -> Option<(String, String)> {
    let rest = detail.strip_prefix("unknown key `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let nearest = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| (super::edit_distance(unknown, known), known))
        .min()?;
    (nearest.0 <= 2.max(unknown.len() / 3)).then(|| (unknown.to_string(), nearest.1.to_string()))
}

/// The key of the `key = value` line that holds byte `at` of `text`, if it is one, or the name
/// of a `[table]` header (`[watch]` written for `[[watch]]`).
fn key_at(text: &str, at: usize) -> Option<&str> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    let first = line.lines().next().unwrap_or_default().trim();
    if let Some(table) = first.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let table = table.trim_matches(['[', ']', ' ']);
        return table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            .then_some(table);
    }
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    key.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(key)
}

/// The `[[table]]` whose keys the line holding byte `at` belongs to, if any.
fn table_above(text: &str, at: usize) -> Option<&str> {
    let before = text.get(..at)?;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    before[..start].lines().rev().find_map(|line| {
        let line = line.trim();
        let table = line.strip_prefix('[')?.strip_suffix(']')?;
        Some(table.trim_matches(['[', ']', ' ']))
    })
}

/// Whether `key` belongs at the top of the file (asked of the model itself, so the answer
/// follows [`FileConfig`]: a key it does not know is "unknown", one it does is of another type).
fn is_top_level(key: &str) -> bool {
    toml::from_str::<FileConfig>(&format!("{key} = 0"))
        .err()
        .is_none_or(|err| !err.message().starts_with("unknown field"))
}

/// How a key's value is written, for the error that shows a wrong one (serde's own words are
/// Rust's: `expected u64`, `a sequence`). Keys of `[[watch]]` and `[[route]]` tables included.
fn example_of(key: &str) -> Option<&'static str> {
    Some(match key {
        "upstream" => "`upstream = \"http://localhost:8000\"`",
        "listen" => "`listen = \"127.0.0.1:3000\"`",
        "serve" => "`serve = \"public\"`",
        "spa" => "`spa = true`",
        "changes_path" => "`changes_path = \"/changes\"`",
        "heartbeat" => "`heartbeat = \"15s\"`",
        "shutdown_grace" => "`shutdown_grace = \"5s\"`",
        "header_timeout" => "`header_timeout = \"20s\"`",
        "connect_timeout" => "`connect_timeout = \"3s\"`",
        "response_timeout" => "`response_timeout = \"120s\"`",
        "inject" => "`inject = true`",
        "keep_host" => "`keep_host = false`",
        "insecure" => "`insecure = false`",
        "poll" => "`poll = true`",
        "allowed_hosts" => "`allowed_hosts = [\"myapp.test\"]`",
        "ignore" => "`ignore = [\"*.log\", \"tmp/**\"]`",
        "max_connections" => "`max_connections = 16384`",
        "debounce" => "`debounce = 10` (milliseconds, a whole number)",
        "poll_interval" => "`poll_interval = 500` (milliseconds, a whole number)",
        "watch" => "`[[watch]] dir = \"static\" url = \"/static\"` (a table per folder)",
        "route" => {
            "`[[route]] path = \"/api\" upstream = \"http://localhost:4000\"` (a table per route)"
        }
        "dir" => "`dir = \"static\"`",
        "url" => "`url = \"/static\"`",
        "path" => "`path = \"/api\"`",
        _ => return None,
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
        assert!(err.contains("unknown key `listen_addr`"), "{err}");
        assert!(err.contains("fix the key's spelling"), "{err}");
    }

    /// A top-level key written below a `[[watch]]` table is read as that table's: the error
    /// says so, where serde alone says only which keys a watch table takes.
    #[test]
    fn a_top_level_key_under_a_table_is_named_as_such() {
        let text = "[[watch]]\ndir = \".\"\nurl = \"/s\"\nupstream = \"http://localhost:8000\"\n";
        let err = parse(Path::new("x.toml"), text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("`upstream` is a top-level key"), "{err}");
        assert!(err.contains("after `[[watch]]`"), "{err}");
        // A typo in a table is still a typo.
        let err = parse(
            Path::new("x.toml"),
            "[[route]]\npath = \"/api\"\nupstrem = \"x\"\n",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("did you mean `upstream`?"), "{err}");
    }

    #[test]
    fn rust_type_names_are_said_in_the_files_words() {
        for (text, said, not) in [
            ("debounce = \"10ms\"\n", "expected a whole number", "u64"),
            (
                "watch = [\"../app\"]\n",
                "expected a [[watch]] table",
                "struct",
            ),
            (
                "[watch]\ndir = \"x\"\n",
                "invalid type: table, expected a list",
                "sequence",
            ),
        ] {
            let err = parse(Path::new("x.toml"), text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(said) && !err.contains(not), "{err}");
        }
    }

    #[test]
    fn wrong_type_is_reported() {
        let err = parse(Path::new("x.toml"), "debounce = \"fast\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("`debounce`"), "{err}");
        assert!(
            err.contains("`debounce = 10` (milliseconds, a whole number)"),
            "{err}"
        );
        // A key in a table, and a list written as one string.
        for (text, key, example) in [
            ("[[watch]]\ndir = 5\n", "`dir`", "dir = \"static\""),
            ("ignore = \"*.log\"\n", "`ignore`", "ignore = [\"*.log\""),
            ("watch = { a = 1 }\n", "`watch`", "[[watch]]"),
            // One pair of brackets where each folder's table wants two.
            ("[watch]\ndir = \"static\"\n", "`watch`", "[[watch]]"),
        ] {
            let err = parse(Path::new("x.toml"), text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains(key) && err.contains(example),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn a_poll_interval_written_as_poll_names_poll_interval() {
        let err = parse(Path::new("x.toml"), "poll = 500\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("line 1: `poll`: invalid type: integer `500`"),
            "{err}"
        );
        assert!(err.contains("write `poll_interval = 500`"), "{err}");
        // Another wrong type keeps the usual example.
        let err = parse(Path::new("x.toml"), "poll = \"yes\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("write it as in `poll = true`"), "{err}");
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
