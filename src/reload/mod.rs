//! Config reloads: what starts one ([`trigger`]), what it is to do ([`plan`],
//! a pure diff of what runs and what the files say), and doing it
//! ([`apply`](mod@apply), off the reader thread, handed to the reader in one swap).
//! Configs whose file is unchanged are left alone: their programs stay
//! attached and their counters keep counting.

pub mod apply;
pub mod plan;
pub mod trigger;

use std::fmt;

pub use apply::{apply, start, LoadSettings};

/// What one reload did, config by config.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub unchanged: Vec<String>,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Changes refused, with the reason.
    pub rejected: Vec<(String, String)>,
    /// The refused ones whose previous version keeps running.
    pub kept: Vec<String>,
}

impl fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        write!(
            f,
            "added: {}; changed: {}; removed: {}; unchanged: {}",
            list(&self.added),
            list(&self.changed),
            list(&self.removed),
            list(&self.unchanged)
        )?;
        for (name, reason) in &self.rejected {
            if self.kept.contains(name) {
                write!(f, "\nrejected {name}, previous version kept: {reason}")?;
            } else {
                write!(f, "\nrejected {name}: {reason}")?;
            }
        }
        Ok(())
    }
}

impl ReloadOutcome {
    pub fn is_successful(&self) -> bool {
        self.rejected.is_empty()
    }

    /// Something was added, changed or removed.
    pub fn changed_anything(&self) -> bool {
        !(self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty())
    }
}
