//! What starts a reload: `SIGHUP`, `POST /-/reload`, a change seen in
//! `--config.dir` by the file watcher, or the periodic checksum of the
//! directory for filesystems that send no events. All of them go through
//! one [`Reloader`], which reloads one at a time.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use super::{reconcile, ReloadOutcome};
use crate::config::{self, Source};
use crate::reader::maps::ReadMethod;
use crate::reader::Running;

/// Events closer together than this are one change: an editor's save, or a
/// ConfigMap update, is several events.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Re-reads the configs and applies them to a running reader.
pub struct Reloader {
    running: Arc<Running>,
    dir: Option<PathBuf>,
    names: Option<Vec<String>>,
    prefix: String,
    method: ReadMethod,
    /// Fingerprint of the sources last applied; also serialises reloads.
    applied: Mutex<u64>,
}

impl Reloader {
    /// `sources` are the ones the reader was started with.
    pub fn new(
        running: Arc<Running>,
        dir: Option<PathBuf>,
        names: Option<Vec<String>>,
        prefix: String,
        method: ReadMethod,
        sources: &[Source],
    ) -> Self {
        Reloader {
            running,
            dir,
            names,
            prefix,
            method,
            applied: Mutex::new(fingerprint(sources)),
        }
    }

    /// Reads the configs again and applies what changed. An unreadable
    /// directory is a failed reload: nothing changes.
    pub fn reload(&self) -> Result<ReloadOutcome, String> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        match config::sources(self.dir.as_deref(), self.names.as_deref()) {
            Ok(sources) => self.apply(&mut applied, sources),
            Err(e) => {
                let message = format!("{e:#}");
                tracing::error!("reload failed, every config keeps running: {message}");
                self.running.with_reader(|reader| reader.record_reload(false));
                Err(message)
            }
        }
    }

    /// Reloads only if the configs on disk differ from the ones last
    /// applied: what the watcher and the periodic check call.
    pub fn reload_if_changed(&self) -> Option<Result<ReloadOutcome, String>> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let sources = config::sources(self.dir.as_deref(), self.names.as_deref()).ok()?;
        (*applied != fingerprint(&sources)).then(|| self.apply(&mut applied, sources))
    }

    /// Applies `sources` on the reader thread; `applied` is the held lock.
    fn apply(&self, applied: &mut u64, sources: Vec<Source>) -> Result<ReloadOutcome, String> {
        *applied = fingerprint(&sources);
        let (prefix, method) = (self.prefix.clone(), self.method);
        let outcome = self
            .running
            .with_reader(move |reader| reconcile(reader, &sources, &prefix, method))
            .ok_or_else(|| "the map reader has stopped".to_string())?;
        tracing::info!(
            added = ?outcome.added,
            changed = ?outcome.changed,
            removed = ?outcome.removed,
            rejected = outcome.rejected.len(),
            "configs reloaded"
        );
        Ok(outcome)
    }
}

/// One number for a whole set of sources: names, origins and texts.
fn fingerprint(sources: &[Source]) -> u64 {
    let mut hasher = DefaultHasher::new();
    sources.hash(&mut hasher);
    hasher.finish()
}

/// Watches `dir` (the directory, not its files: a file replaced by a rename
/// or a Kubernetes `..data` symlink swap leaves a watch on the old file
/// dead) and reloads on changes, and every `every` regardless of events.
/// Runs until the returned watcher handle is dropped.
pub fn watch(dir: &Path, reloader: Arc<Reloader>, every: Duration) -> notify::Result<WatchHandle> {
    let (events, received) = mpsc::channel::<()>();
    // The callback holds the only sender: dropping the watcher ends the
    // thread below.
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = events.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let thread = std::thread::Builder::new()
        .name("config-watcher".into())
        .spawn(move || {
            let mut next_check = Instant::now() + every;
            loop {
                match received.recv_timeout(next_check.saturating_duration_since(Instant::now())) {
                    Ok(()) => {
                        // Let the burst settle, then look once.
                        while received.recv_timeout(DEBOUNCE).is_ok() {}
                        reloader.reload_if_changed();
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        reloader.reload_if_changed();
                        next_check = Instant::now() + every;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })
        .map_err(notify::Error::io)?;
    Ok(WatchHandle {
        watcher: Some(watcher),
        thread: Some(thread),
    })
}

/// Stops watching when dropped.
pub struct WatchHandle {
    watcher: Option<notify::RecommendedWatcher>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.watcher.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
