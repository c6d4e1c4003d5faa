//! Errors in the configuration: each names where the bad value came from and how to fix it.
//!
//! Owns [`ConfigError`] and [`Origin`] (flag, environment variable, config-file key). It does not
//! decide what is valid; `config::mod` does, and builds these with the fix spelled out, so the
//! binary can print one line and exit with code 2.

use std::fmt;
use std::path::PathBuf;

/// Where a setting's value came from, so an error can point at the exact thing to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag such as `--listen`, or the `UPSTREAM` argument.
    Flag(String),
    /// An environment variable such as `HMR_PROXY_LISTEN`.
    Env(String),
    /// A key in a config file.
    File { path: PathBuf, key: &'static str },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "{flag}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::File { path, key } => write!(f, "{}: key `{key}`", path.display()),
        }
    }
}

impl Origin {
    /// A fix written the way this origin takes it: `flag` for a flag, `env` (the value only,
    /// after the variable's name and `=`) for a variable, `file` for a config file. A fix in
    /// flag syntax could not be pasted into compose's `environment:` or into TOML.
    pub fn spelled(&self, flag: &str, env: &str, file: &str) -> String {
        match self {
            Origin::Flag(_) => flag.to_string(),
            Origin::Env(var) => format!("{var}={env}"),
            Origin::File { .. } => file.to_string(),
        }
    }
}

/// A configuration problem that stops the proxy before it starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or does not make sense.
    #[error("{origin}: {problem}; {fix}")]
    Invalid {
        origin: Origin,
        problem: String,
        fix: String,
    },
    /// Two settings that cannot be used together.
    #[error("{first} and {second} cannot be used together; {fix}")]
    Conflict {
        first: Origin,
        second: Origin,
        fix: String,
    },
    /// The config file named with `--config` (or found by default) cannot be read.
    #[error("config file {}: {source}; make it a readable UTF-8 file, or point --config (HMR_PROXY_CONFIG) at another", path.display())]
    FileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown or mistyped key.
    #[error("config file {}{}: {detail}; {fix}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    FileSyntax {
        path: PathBuf,
        line: Option<usize>,
        detail: String,
        fix: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(
        origin: Origin,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            origin,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}
