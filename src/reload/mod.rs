//! Config reloads as a diff applied to a running [`Reader`]: configs whose
//! text is unchanged are left alone (their programs stay attached and their
//! counters keep counting), changed and added ones are loaded and attached
//! before they replace anything, removed ones are detached. A change that
//! fails to parse, load or attach is rejected and the running version of
//! that config stays; the other changes still apply. Where the new version
//! cannot attach beside the old one (an interface takes one XDP program),
//! the old one is detached first and restored if the new one still fails.

pub mod trigger;

use std::fmt;

use crate::config::Source;
use crate::exporter;
use crate::metrics::ConfigState;
use crate::reader::maps::ReadMethod;
use crate::reader::Reader;

/// What one reload did, config by config.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub unchanged: Vec<String>,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Changes refused, with the reason; the previous version (if any)
    /// keeps running.
    pub rejected: Vec<(String, String)>,
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
            write!(f, "\nrejected {name}, previous version kept: {reason}")?;
        }
        Ok(())
    }
}

impl ReloadOutcome {
    pub fn is_successful(&self) -> bool {
        self.rejected.is_empty()
    }
}

/// Brings `reader` to `sources` (the whole desired set) and records the
/// result in its reload self-metrics.
pub fn reconcile(reader: &mut Reader, sources: &[Source], prefix: &str, method: ReadMethod) -> ReloadOutcome {
    let mut outcome = ReloadOutcome::default();
    for name in reader.config_names() {
        if !sources.iter().any(|s| s.name == name) {
            reader.remove(&name);
            outcome.removed.push(name);
        }
    }
    for source in sources {
        // Unchanged text, running or refused before: nothing to do, and a
        // config that failed for good is not reported again on every reload.
        if reader.known_text(&source.name) == Some(source.text.as_str()) {
            outcome.unchanged.push(source.name.clone());
            continue;
        }
        let running = reader.running_text(&source.name).map(str::to_owned);
        let mut status = exporter::apply(reader, source, prefix, method).status;
        if status.state == ConfigState::Failed && running.is_some() {
            // Some attachments are exclusive (one XDP program per interface
            // and mode): the new version cannot attach beside the old one.
            // Break before make instead, and roll back if it still fails.
            reader.remove(&source.name);
            status = exporter::apply(reader, source, prefix, method).status;
            if status.state != ConfigState::Running {
                let old = Source {
                    text: running.clone().unwrap_or_default(),
                    ..source.clone()
                };
                let restored = exporter::apply(reader, &old, prefix, method).status;
                if restored.state != ConfigState::Running {
                    tracing::error!(config = %source.name, "rolling back failed too; the config is down");
                    reader.add_failed(restored, &old.text);
                }
            }
        }
        if status.state == ConfigState::Running {
            match running {
                Some(_) => outcome.changed.push(source.name.clone()),
                None => outcome.added.push(source.name.clone()),
            }
            continue;
        }
        let reason = status.error.clone().unwrap_or_else(|| {
            status
                .programs
                .iter()
                .filter_map(|p| p.error.as_deref())
                .collect::<Vec<_>>()
                .join("; ")
        });
        tracing::error!(config = %source.name, "reload rejected, previous version kept: {reason}");
        if running.is_none() {
            // Nothing runs under this name: show why on `/` and in metrics.
            reader.add_failed(status, &source.text);
        }
        outcome.rejected.push((source.name.clone(), reason));
    }
    reader.record_reload(outcome.is_successful());
    outcome
}
