//! Reading a file, layering `CAPSTAN_` environment variables over it with figment,
//! and turning deserialization errors into problems with a key path and a place.

use std::ops::Range;
use std::path::{Path, PathBuf};

use figment::providers::Format;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use crate::error::{ConfigError, Location, Problem, Seg, render_path};
use crate::raw::RawConfig;

/// Prefix of the environment variables that override file keys.
pub const ENV_PREFIX: &str = "CAPSTAN_";
/// Separator of key levels in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// A parsed file with what is needed to point at its keys.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) file: PathBuf,
    text: String,
    doc: toml_edit::Document<String>,
    /// Key paths set from the environment, with the variable that set each.
    env_keys: Vec<(Vec<String>, String)>,
}

impl Source {
    /// Where `path` is: the environment variable that set it, or its line and column.
    pub(crate) fn locate(&self, path: &[Seg]) -> Location {
        let keys: Vec<&str> = path
            .iter()
            .filter_map(|s| match s {
                Seg::Key(k) => Some(k.as_str()),
                Seg::Index(_) => None,
            })
            .collect();
        // A value set from the environment is reported there: the variable's key path
        // is the error's path or a prefix of it.
        for (env_path, var) in &self.env_keys {
            if env_path.len() <= keys.len() && env_path.iter().zip(&keys).all(|(a, b)| a == b) {
                return Location::Env { var: var.clone() };
            }
        }
        match self.span_of(path) {
            Some(span) => {
                let (line, column) = line_col(&self.text, span.start);
                Location::File { line, column }
            }
            None => Location::Unknown,
        }
    }

    /// The span of the deepest item along `path` that exists in the file.
    fn span_of(&self, path: &[Seg]) -> Option<Range<usize>> {
        let mut item = self.doc.as_item();
        let mut best = None;
        for seg in path {
            let next = match seg {
                Seg::Key(k) => item.get(k.as_str()),
                Seg::Index(i) => item.get(*i),
            };
            match next {
                Some(next) => {
                    item = next;
                    if let Some(span) = item.span() {
                        best = Some(span);
                    }
                }
                None => break,
            }
        }
        best
    }
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// One override: key path, variable name, raw value.
type EnvEntry = (Vec<String>, String, String);

/// The `CAPSTAN_` variables as a figment provider: `CAPSTAN_AGENT__LISTEN` sets `agent.listen`.
#[derive(Debug)]
struct EnvLayer {
    entries: Vec<EnvEntry>,
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("CAPSTAN_ environment variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (keys, _, value) in &self.entries {
            let parsed: Value = value.parse().unwrap_or_else(|_| Value::from(value.clone()));
            insert(&mut root, keys, parsed);
        }
        Ok(Profile::Default.collect(root))
    }
}

fn insert(dict: &mut Dict, keys: &[String], value: Value) {
    match keys {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// Splits the environment into config overrides, and problems with variables that
/// look like overrides but cannot be one. Variables without `__` (such as
/// `CAPSTAN_LOG`) are not config keys and are left alone.
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> (Vec<EnvEntry>, Vec<Problem>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains(ENV_SEPARATOR) {
            continue;
        }
        let keys: Vec<String> = rest
            .split(ENV_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        let key = keys.join(".");
        if keys.iter().any(String::is_empty) {
            problems.push(Problem {
                key,
                pool: None,
                location: Location::Env { var },
                message:
                    "empty key level; write CAPSTAN_<TABLE>__<KEY>, e.g. CAPSTAN_AGENT__LISTEN"
                        .to_owned(),
            });
            continue;
        }
        if keys[0] == "pool" {
            problems.push(Problem {
                key,
                pool: None,
                location: Location::Env { var },
                message: "pools cannot be set from the environment; edit [[pool]] in the file"
                    .to_owned(),
            });
            continue;
        }
        entries.push((keys, var, value));
    }
    entries.sort();
    (entries, problems)
}

/// Reads `file`, layers the environment over it and deserializes the raw schema.
pub(crate) fn load_raw(
    file: &Path,
    text: String,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(RawConfig, Source), ConfigError> {
    let doc = toml_edit::Document::parse(text.clone()).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(&text, s.start));
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })?;
    let (entries, env_problems) = env_overrides(env);
    let source = Source {
        file: file.to_owned(),
        env_keys: entries
            .iter()
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect(),
        text,
        doc,
    };
    if !env_problems.is_empty() {
        return Err(ConfigError::Invalid {
            file: file.to_owned(),
            problems: env_problems,
        });
    }

    let figment =
        Figment::from(figment::providers::Toml::string(&source.text)).merge(EnvLayer { entries });
    let merged: Value = figment.extract().map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        line: 1,
        column: 1,
        message: e.to_string(),
    })?;
    match serde_path_to_error::deserialize::<_, RawConfig>(&merged) {
        Ok(raw) => Ok((raw, source)),
        Err(err) => {
            let mut path: Vec<Seg> = err
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { variant } => {
                        Some(Seg::Key(variant.clone()))
                    }
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            let kind = &err.inner().kind;
            let message = match kind {
                figment::error::Kind::UnknownField(field, expected) => {
                    if path.last() != Some(&Seg::Key(field.clone())) {
                        path.push(Seg::Key(field.clone()));
                    }
                    format!(
                        "unknown key `{field}`; allowed here: {}",
                        expected.join(", ")
                    )
                }
                figment::error::Kind::MissingField(field) => {
                    let message = format!("missing required key `{field}`");
                    let location = source.locate(&path);
                    path.push(Seg::Key(field.to_string()));
                    return Err(invalid(&source, &path, location, message));
                }
                figment::error::Kind::UnknownVariant(found, expected) => {
                    format!("unknown value `{found}`; allowed: {}", expected.join(", "))
                }
                other => other.to_string(),
            };
            let location = source.locate(&path);
            Err(invalid(&source, &path, location, message))
        }
    }
}

fn invalid(source: &Source, path: &[Seg], location: Location, message: String) -> ConfigError {
    ConfigError::Invalid {
        file: source.file.clone(),
        problems: vec![Problem {
            key: render_path(path),
            pool: None,
            location,
            message,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        let off = text.find('"').unwrap();
        assert_eq!(line_col(text, off), (2, 6));
    }

    #[test]
    fn env_names_map_to_nested_lowercase_keys() {
        let (entries, problems) = env_overrides([
            ("CAPSTAN_AGENT__STATE_DIR".to_owned(), "state".to_owned()),
            ("CAPSTAN_LOG".to_owned(), "debug".to_owned()),
            ("OTHER__X".to_owned(), "1".to_owned()),
        ]);
        assert!(problems.is_empty());
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].0,
            vec!["agent".to_owned(), "state_dir".to_owned()]
        );
    }

    #[test]
    fn env_cannot_set_pools_or_empty_levels() {
        let (_, problems) = env_overrides([
            ("CAPSTAN_POOL__MIN".to_owned(), "1".to_owned()),
            ("CAPSTAN_AGENT__".to_owned(), "1".to_owned()),
        ]);
        assert_eq!(problems.len(), 2);
    }
}
