//! YAML text → [`RawConfig`] (or any other strict schema, such as the web
//! configuration), every failure with its place.
//!
//! serde alone says what is wrong but not where; recording the YAML path on
//! the way down and taking the line and column from the parser lets a typo
//! in the YAML be reported like any later check: `file:line:column: path:`.

use std::cell::RefCell;

use serde_saphyr::{DefaultMessageFormatter, MessageFormatter};

use super::raw::RawConfig;
use super::ConfigError;

/// serde stage, with the YAML path of the failure recorded on the way; a
/// file of only comments is refused first, with what a config needs.
pub(super) fn deserialize(file: &str, text: &str) -> Result<RawConfig, ConfigError> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ConfigError::file_level(
            file,
            "the file is empty: a config needs at least a `metrics:` section with `counters:`",
        ));
    }
    deserialize_located(file, text)
}

/// `text` as a `T`, a failure located at its `file:line:column` and YAML path.
pub(crate) fn deserialize_located<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ConfigError> {
    let path = RefCell::new(String::new());
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            *path.borrow_mut() = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let inner = e.without_snippet();
        let message = DefaultMessageFormatter.format_message(inner).into_owned();
        let path = clean_path(&path.borrow());
        match e.location() {
            Some(location) => ConfigError::at(file, location, path, message),
            None => ConfigError {
                path,
                ..ConfigError::file_level(file, message)
            },
        }
    })
}

/// What a config says about the object it runs, read before the config
/// is parsed (the object is read with the file, so that a changed object
/// is a changed config). Any other key, or a text that does not parse,
/// gives nothing here; parsing says what is wrong.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ProgramKeys {
    pub program: Option<String>,
    pub object: Option<String>,
    pub pinned: Option<std::collections::BTreeMap<String, String>>,
}

pub(super) fn program_keys(text: &str) -> ProgramKeys {
    serde_saphyr::from_str(text).unwrap_or_default()
}

/// Drops the `.value` steps that span wrappers add and the `.` of the root.
fn clean_path(path: &str) -> String {
    let cleaned: Vec<&str> = path
        .split('.')
        .filter(|s| *s != "value" && !s.is_empty() && *s != "?")
        .collect();
    cleaned.join(".")
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::{assert_error, SYSCALLS};

    #[test]
    fn unknown_key_is_refused_with_its_place() {
        let text = SYSCALLS.replace(
            "      help: Syscalls.\n",
            "      help: Syscalls.\n      tabel: x\n",
        );
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:5:7: metrics.counters[0].tabel:",
            "unknown field `tabel`",
        );
    }

    #[test]
    fn duplicate_key_is_refused() {
        let text = SYSCALLS.replace(
            "      help: Syscalls.\n",
            "      help: Syscalls.\n      help: Again.\n",
        );
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:5:7: metrics.counters[0]:",
            "duplicate mapping key: help",
        );
    }

    #[test]
    fn wrong_type_is_refused() {
        let text = SYSCALLS.replace("size: 8", "size: eight");
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:7:17: metrics.counters[0].labels[0].size:",
            "invalid u64",
        );
    }

    #[test]
    fn missing_help_is_refused() {
        let text = SYSCALLS.replace("      help: Syscalls.\n", "");
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:4:7: metrics.counters[0]:",
            "missing field `help`",
        );
    }

    #[test]
    fn empty_file_and_non_yaml_are_refused() {
        assert_error("syscalls", "", "configs/syscalls.yaml:", "the file is empty");
        assert_error(
            "syscalls",
            "# only a comment\n\n",
            "configs/syscalls.yaml:",
            "the file is empty",
        );
        assert_error("syscalls", "metrics: [unclosed", "configs/syscalls.yaml:1:", "");
        assert_error("syscalls", "just a string", "configs/syscalls.yaml:1:1", "");
        assert_error(
            "syscalls",
            "metrics: 5\n",
            "configs/syscalls.yaml:1:10: metrics:",
            "",
        );
    }
}
