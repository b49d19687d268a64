//! Config errors that say where: `file:line:column: yaml.path: what to fix`.

use std::fmt;

use serde_saphyr::Location;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the config came from, as the user knows it.
    pub file: String,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(u64, u64)>,
    /// YAML path such as `metrics.counters[0].labels[1]`; empty for the file.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn at(file: &str, location: Location, path: impl Into<String>, message: impl Into<String>) -> Self {
        let position = (location.line() > 0).then(|| (location.line(), location.column()));
        ConfigError {
            file: file.to_string(),
            position,
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn file_level(file: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            position: None,
            path: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found in one config; validation reports them all at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
