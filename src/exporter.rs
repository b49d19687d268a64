//! The fleet and the reader put together: on the calling thread
//! ([`Exporter`]: `--config.check`, the tests, the benches), or on threads of
//! their own as the binary runs them ([`spawn`]). The path from files to
//! snapshots is the same.

use std::sync::Arc;

use crate::config::{Listing, Source};
use crate::fleet::Fleet;
use crate::metrics::{ConfigStatus, Snapshot, SnapshotCell};
use crate::reader::{self, Reader};
use crate::reload::trigger::{self, Reloader};
use crate::reload::{self, LoadSettings, ReloadOutcome};
use crate::settings::Settings;

pub struct Exporter {
    fleet: Fleet,
    reader: Reader,
    settings: LoadSettings,
}

impl Exporter {
    /// Applies `listing` to an empty fleet: the start-up.
    pub fn start(listing: &Listing, settings: LoadSettings, mut reader: Reader) -> (Exporter, ReloadOutcome) {
        let (fleet, outcome) = reload::start(listing, &settings, false);
        reader.swap(fleet.read_set());
        let exporter = Exporter {
            fleet,
            reader,
            settings,
        };
        (exporter, outcome)
    }

    /// [`Exporter::start`] with the default settings and reader.
    pub fn with_sources(sources: &[Source]) -> (Exporter, ReloadOutcome) {
        Exporter::start(
            &Listing::from(sources.to_vec()),
            LoadSettings::default(),
            Reader::default(),
        )
    }

    /// Brings what runs to `listing`, as a reload does, and counts it in
    /// the reload self-metrics.
    pub fn reload(&mut self, listing: &Listing) -> ReloadOutcome {
        let outcome = reload::apply(&mut self.fleet, listing, &self.settings);
        self.fleet.record_reload(outcome.is_successful());
        self.reader.swap(self.fleet.read_set());
        outcome
    }

    /// Reads every map once.
    pub fn read(&mut self) -> Snapshot {
        self.reader.read()
    }

    pub fn statuses(&self) -> Vec<ConfigStatus> {
        self.fleet.statuses()
    }
}

/// The reader and the reloader on their threads; dropping it stops both
/// and detaches every program.
pub struct Threads {
    pub reloader: Arc<Reloader>,
    /// Held by the reloader too, which hands it every new read set.
    _reader: Arc<reader::Running>,
}

/// Runs `fleet`, started from `listing`, as the binary does: the reader
/// publishes into `cell` every read interval, the reloader applies
/// reloads and hands the reader each new read set.
pub fn spawn(
    fleet: Fleet,
    listing: &Listing,
    settings: &Settings,
    cell: Arc<SnapshotCell>,
) -> std::io::Result<Threads> {
    let mut reader = settings.reader();
    reader.swap(fleet.read_set());
    let running = Arc::new(reader::spawn(reader, cell, settings.read_interval)?);
    let publish: trigger::Publish = {
        let running = Arc::clone(&running);
        Box::new(move |set| {
            running.swap(set);
        })
    };
    let reloader = Reloader::spawn(
        fleet,
        settings.selection.clone(),
        settings.load.clone(),
        trigger::seen(&Ok(listing.clone())),
        publish,
    )?;
    Ok(Threads {
        reloader: Arc::new(reloader),
        _reader: running,
    })
}

/// The `--config.check` report: one block per config.
pub fn report(statuses: &[ConfigStatus]) -> String {
    let mut out = String::new();
    for s in statuses {
        let verdict = if s.is_good() { "ok" } else { "FAILED" };
        out.push_str(&format!(
            "{verdict:<6} {} ({}) {}\n",
            s.name,
            s.source,
            s.state.as_str()
        ));
        for error in s.error.iter().chain(&s.rejected) {
            for line in error.lines() {
                out.push_str(&format!("       {line}\n"));
            }
        }
        for p in &s.programs {
            let mark = if p.attached { "attached" } else { "NOT attached" };
            out.push_str(&format!(
                "       program {} (SEC \"{}\"): {mark}\n",
                p.name, p.section
            ));
            if let Some(error) = &p.error {
                for line in error.lines() {
                    out.push_str(&format!("         {line}\n"));
                }
            }
        }
    }
    out
}
