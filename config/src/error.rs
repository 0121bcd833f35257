//! Configuration errors: each problem names the file, the key path and the place.

use std::fmt;
use std::path::PathBuf;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Renders a key path as users write it: `pool[0].targets[1].value`.
pub fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    if out.is_empty() {
        "(top level)".to_owned()
    } else {
        out
    }
}

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A 1-based line and column in the file.
    File {
        /// Line, from 1.
        line: usize,
        /// Column in characters, from 1.
        column: usize,
    },
    /// A `CAPSTAN_` environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// Somewhere in the file, e.g. a key that is missing altogether.
    Unknown,
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `pool[0].min`.
    pub key: String,
    /// The pool's name when the key is inside a pool.
    pub pool: Option<String>,
    /// Where it is.
    pub location: Location,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}:{column}: TOML syntax error: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The file parsed but has wrong keys, types or values; every problem is listed.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found, in file order where known.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems, one line each, as `capstan validate` prints them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { file, problems } => {
                problems.iter().map(|p| render_problem(file, p)).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

fn render_problems(file: &std::path::Path, problems: &[Problem]) -> String {
    let mut out = format!("{}: {} problem(s):", file.display(), problems.len());
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&render_problem(file, p));
    }
    out
}

fn render_problem(file: &std::path::Path, p: &Problem) -> String {
    let pool = p
        .pool
        .as_ref()
        .map(|n| format!(" (pool \"{n}\")"))
        .unwrap_or_default();
    match &p.location {
        Location::File { line, column } => {
            format!(
                "{}:{line}:{column}: {}{pool}: {}",
                file.display(),
                p.key,
                p.message
            )
        }
        Location::Env { var } => {
            format!("environment variable {var}: {}{pool}: {}", p.key, p.message)
        }
        Location::Unknown => format!("{}: {}{pool}: {}", file.display(), p.key, p.message),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}
