//! `strangler.toml`, the one file that describes a migration.
//!
//! Configuration is read in two steps (the ripgrep way):
//!
//! 1. [`raw`]: what the file says, deserialized with `deny_unknown_fields` and
//!    with source spans kept on every value that a later check may reject.
//! 2. [`Config`]: what the code runs on, produced by [`Config::from_toml`]
//!    after every semantic check. Runtime code only ever sees validated types.
//!
//! Every error names the file, the line and column, and the key
//! (`strangler.toml:12:9: routes[1].stage: unknown stage "canry" …`).

pub mod edit;
mod error;
pub mod raw;
mod template;
mod validate;
mod validated;

pub use error::{ConfigError, ConfigErrors};
pub use template::{PathTemplate, Segment, SplitPath};
pub use validate::revision;
pub use validated::*;

use std::path::Path;

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(ConfigError::io(path, format!("cannot read the file: {e}")))
        })?;
        Config::from_toml(&text, path)
    }

    /// Validates `text`, which was read from `path` (used in messages and to
    /// resolve relative paths such as the SQLite state file).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        validate::validate(text, path)
    }
}
