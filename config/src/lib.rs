//! Capstan's configuration.
//!
//! A TOML file, layered with `CAPSTAN_` environment variables (`__` separates levels:
//! `CAPSTAN_AGENT__LISTEN=127.0.0.1:0` sets `agent.listen`), deserialized into the raw
//! schema of [`raw`] (unknown keys are errors), then validated into a
//! [`ValidatedConfig`]. Every error names the file, the key path and the line:column
//! (or the environment variable), and validation reports all problems at once.
//!
//! This crate does no I/O beyond reading the file it is given.

mod error;
mod load;
mod model;
pub mod raw;
mod validate;

use std::path::Path;

pub use error::{ConfigError, Location, Problem};
pub use load::{ENV_PREFIX, ENV_SEPARATOR};
pub use model::*;

/// The optional parts a build of capstan was compiled with (cargo features such as
/// `aws`, `etcd`, `tls`). A configuration that needs a part the build lacks is refused at
/// validation, naming the key and the feature, instead of failing when the agent starts.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    /// The features compiled in, e.g. `["aws", "etcd"]`.
    pub enabled: &'a [&'a str],
}

impl Features<'_> {
    /// Every optional part, in name order: validation then checks the configuration
    /// alone (tooling, tests, and commands such as `simulate` that never reach a cloud).
    pub const ALL: Features<'static> = Features {
        enabled: &[
            "aws",
            "aws-ec2",
            "azure",
            "etcd",
            "gke",
            "kubernetes",
            "nvml",
            "tls",
        ],
    };

    /// Whether `feature` is compiled in.
    pub fn has(&self, feature: &str) -> bool {
        self.enabled.contains(&feature)
    }
}

/// Loads and validates `file`, layered with this process's `CAPSTAN_` variables.
pub fn load(file: &Path) -> Result<ValidatedConfig, ConfigError> {
    load_with_env(file, std::env::vars())
}

/// As [`load`], and refuses what `features` cannot drive (a provider type, a
/// coordinator or `[cluster.tls]` whose feature the build lacks).
pub fn load_for(file: &Path, features: Features<'_>) -> Result<ValidatedConfig, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
        file: file.to_owned(),
        source,
    })?;
    from_str_for(file, &text, std::env::vars(), features)
}

/// Loads and validates `file`, layered with the given environment.
pub fn load_with_env(
    file: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<ValidatedConfig, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
        file: file.to_owned(),
        source,
    })?;
    from_str(file, &text, env)
}

/// Validates `text` as if read from `name` (used for the embedded default config).
pub fn from_str(
    name: &Path,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<ValidatedConfig, ConfigError> {
    from_str_for(name, text, env, Features::ALL)
}

/// As [`from_str`], refusing what `features` cannot drive.
pub fn from_str_for(
    name: &Path,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    features: Features<'_>,
) -> Result<ValidatedConfig, ConfigError> {
    let (raw, source) = load::load_raw(name, text.to_owned(), env)?;
    validate::validate(raw, &source, features)
}

/// Deserializes `text` into the raw schema without semantic checks (for tooling).
pub fn raw_from_str(name: &Path, text: &str) -> Result<raw::RawConfig, ConfigError> {
    load::load_raw(name, text.to_owned(), std::iter::empty()).map(|(raw, _)| raw)
}

/// The JSON Schema of the configuration file, generated from the raw types (their doc
/// comments become descriptions). Shipped as `packaging/schema/capstan.schema.json` for
/// TOML editors (taplo, Even Better TOML); `capstan config-schema` prints it.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(raw::RawConfig);
    schema.insert("title".to_owned(), "Capstan configuration".into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
