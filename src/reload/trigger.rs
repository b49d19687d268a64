//! What starts a reload: `POST /-/reload`, `SIGHUP`, a change the file
//! watcher sees in `--config.dir`, or the periodic look at the directory for
//! filesystems that send no events. All of them go through one
//! [`Reloader`], whose worker thread owns the [`Fleet`] and reloads one at
//! a time; between reloads it samples the configs' CPU budgets and
//! detaches those over theirs. Requests that arrive while one is pending
//! coalesce into it, so a storm of them costs one or two reloads, and
//! every request is answered by a reload that started after it arrived.
//!
//! Every trigger reports every failure the same way: logged, and
//! `bpf_exporter_config_last_reload_successful` set to 0 until a reload
//! succeeds. The watcher and the periodic look only reload (and report)
//! when what they read differs from what they read last, so a directory
//! that stays broken is reported once, not every 30 seconds.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use super::{apply, LoadSettings, ReloadOutcome};
use crate::config::{Listing, Selection};
use crate::fleet::{fingerprint, Fingerprint, Fleet};
use crate::programs::budget;
use crate::reader::ReadSet;

/// Events closer together than this are one change: an editor's save, or a
/// ConfigMap update, is several events.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Why a reload is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `POST /-/reload`: always reloads and answers with the outcome.
    Request,
    /// `SIGHUP`: always reloads.
    Signal,
    /// The watcher saw a change, or the periodic look came round: reloads
    /// only if the files differ from what was last read.
    Watch,
}

/// A reload's outcome; `Err` when the configs could not be listed at all
/// (every config keeps running as it was).
pub type ReloadResult = Result<ReloadOutcome, String>;

/// Where the worker hands each new read set: the reader.
pub type Publish = Box<dyn Fn(ReadSet) + Send>;

#[derive(Default)]
struct Queue {
    /// Tickets handed out so far; a reload serves every ticket up to the
    /// count when it started.
    wanted: u64,
    /// Some pending request is not [`Trigger::Watch`].
    forced: bool,
    /// Tickets served.
    done: u64,
    stop: bool,
}

/// Runs reloads on its own thread; dropping it stops the thread and
/// detaches every program.
pub struct Reloader {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the worker.
    wanted: Condvar,
    /// Wakes blocking waiters.
    done: Condvar,
    /// The last ticket served and its outcome; wakes async waiters (the
    /// HTTP server) without a thread each.
    results: tokio::sync::watch::Sender<(u64, Option<Arc<ReloadResult>>)>,
}

/// The fingerprint of what a read of the configs gave, as the worker keeps
/// it to tell whether the files changed.
pub fn seen(listing: &Result<Listing, String>) -> Fingerprint {
    fingerprint(listing)
}

/// What the worker owns.
struct Worker {
    fleet: Fleet,
    selection: Selection,
    settings: LoadSettings,
    publish: Publish,
    /// What the last reload read (the listing, or why it failed).
    seen: Fingerprint,
}

impl Reloader {
    /// Takes over `fleet`, whose configs were applied from what `selection`
    /// read as `started_from`.
    pub fn spawn(
        fleet: Fleet,
        selection: Selection,
        settings: LoadSettings,
        started_from: Fingerprint,
        publish: Publish,
    ) -> std::io::Result<Reloader> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wanted: Condvar::new(),
            done: Condvar::new(),
            results: tokio::sync::watch::Sender::new((0, None)),
        });
        let mut worker = Worker {
            fleet,
            selection,
            settings,
            publish,
            seen: started_from,
        };
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("config-reloader".into())
                .spawn(move || worker.run(&shared))?
        };
        Ok(Reloader {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a reload and returns its ticket at once.
    pub fn request(&self, trigger: Trigger) -> u64 {
        let mut queue = self.shared.lock();
        queue.wanted += 1;
        queue.forced |= trigger != Trigger::Watch;
        self.shared.wanted.notify_one();
        queue.wanted
    }

    /// Reloads and waits for the outcome, blocking the thread.
    pub fn reload(&self, trigger: Trigger) -> Arc<ReloadResult> {
        let ticket = self.request(trigger);
        let mut queue = self.shared.lock();
        while queue.done < ticket && !queue.stop {
            queue = self
                .shared
                .done
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(queue);
        let finished = self.shared.results.borrow();
        match &finished.1 {
            Some(result) if finished.0 >= ticket => Arc::clone(result),
            _ => Arc::new(Err("the config reloader has stopped".into())),
        }
    }

    /// Reloads and waits for the outcome without holding a thread.
    pub async fn reload_async(&self, trigger: Trigger) -> Arc<ReloadResult> {
        let ticket = self.request(trigger);
        let mut results = self.shared.results.subscribe();
        let finished = match results.wait_for(|(done, _)| *done >= ticket).await {
            Ok(finished) => finished.1.clone(),
            Err(_) => None,
        };
        finished.unwrap_or_else(|| Arc::new(Err("the config reloader has stopped".into())))
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wanted.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the worker wakes up for.
enum Work {
    /// Serve tickets up to this one; `forced` if one is not a watch's.
    Reload {
        ticket: u64,
        forced: bool,
    },
    /// Sample the CPU budgets.
    Budgets,
    Stop,
}

impl Worker {
    fn run(&mut self, shared: &Shared) {
        let tick = budget::tick(self.settings.cpu_budget_window);
        let mut next_sample = Instant::now() + tick;
        loop {
            match self.wait(shared, next_sample) {
                Work::Stop => {
                    shared.done.notify_all();
                    return;
                }
                Work::Budgets => {
                    self.enforce_budgets();
                    next_sample = Instant::now() + tick;
                }
                Work::Reload { ticket, forced } => {
                    let result = Arc::new(self.reload(forced));
                    // The outcome first: a waiter woken by `done` reads it.
                    shared.results.send_replace((ticket, Some(result)));
                    shared.lock().done = ticket;
                    shared.done.notify_all();
                }
            }
        }
    }

    /// Until a reload is wanted, or, while some config has a budget, the
    /// time to sample it comes.
    fn wait(&self, shared: &Shared, next_sample: Instant) -> Work {
        let metered = self.fleet.metered();
        let mut queue = shared.lock();
        loop {
            if queue.stop {
                return Work::Stop;
            }
            if queue.done != queue.wanted {
                return Work::Reload {
                    ticket: queue.wanted,
                    forced: std::mem::take(&mut queue.forced),
                };
            }
            let now = Instant::now();
            if !metered {
                queue = shared.wanted.wait(queue).unwrap_or_else(PoisonError::into_inner);
            } else if now < next_sample {
                queue = shared
                    .wanted
                    .wait_timeout(queue, next_sample - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            } else {
                return Work::Budgets;
            }
        }
    }

    /// Detaches the configs over their CPU budget, says so once each, and
    /// hands the reader what is left.
    fn enforce_budgets(&mut self) {
        let stopped = self.fleet.enforce_budgets(Instant::now());
        for (name, failure) in &stopped {
            tracing::error!(config = %name, "{failure}");
        }
        if !stopped.is_empty() {
            (self.publish)(self.fleet.read_set());
        }
    }

    /// One reload; when not `forced`, only if the files changed since the
    /// last one.
    fn reload(&mut self, forced: bool) -> ReloadResult {
        let listing = self.selection.read().map_err(|e| format!("{e:#}"));
        let seen = seen(&listing);
        if !forced && seen == self.seen {
            return Ok(ReloadOutcome {
                unchanged: self.fleet.members().map(|(n, _)| n.to_string()).collect(),
                ..ReloadOutcome::default()
            });
        }
        self.seen = seen;
        let result = match listing {
            Err(message) => {
                tracing::error!("reload failed, every config keeps running as it was: {message}");
                Err(message)
            }
            Ok(listing) => {
                if listing.is_empty() && self.fleet.members().next().is_some() {
                    tracing::warn!(
                        "no configs are selected any more: every program is detached, and only the \
                         exporter's own metrics are served"
                    );
                }
                let outcome = apply(&mut self.fleet, &listing, &self.settings);
                report(&outcome);
                Ok(outcome)
            }
        };
        self.fleet
            .record_reload(result.as_ref().is_ok_and(ReloadOutcome::is_successful));
        (self.publish)(self.fleet.read_set());
        result
    }
}

/// Logs what a reload did: a line per refused change, one for the rest.
fn report(outcome: &ReloadOutcome) {
    for (name, reason) in &outcome.rejected {
        if outcome.kept.contains(name) {
            tracing::error!(config = %name, "change refused, the previous version keeps running: {reason}");
        } else {
            tracing::error!(config = %name, "config refused: {reason}");
        }
    }
    if outcome.changed_anything() || !outcome.rejected.is_empty() {
        tracing::info!(
            added = ?outcome.added,
            changed = ?outcome.changed,
            removed = ?outcome.removed,
            rejected = outcome.rejected.len(),
            "configs reloaded"
        );
    } else {
        tracing::debug!("configs reloaded: nothing changed");
    }
}

enum Event {
    Changed,
    Stop,
}

/// Watches `dir` (the directory, not its files: a file replaced by a rename
/// or a Kubernetes `..data` symlink swap leaves a watch on the old file
/// dead) and its parent (so a deleted and recreated directory is watched
/// again), and asks for a reload on changes and every `every` regardless
/// of events. Runs until the returned handle is dropped.
pub fn watch(dir: &Path, reloader: Arc<Reloader>, every: Duration) -> notify::Result<WatchHandle> {
    let dir = std::path::absolute(dir).map_err(notify::Error::io)?;
    let (events, received) = mpsc::channel::<Event>();
    let mut watcher = {
        let (events, dir) = (events.clone(), dir.clone());
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match event {
                Ok(e) => !e.kind.is_access() && e.paths.iter().any(|p| p.starts_with(&dir)),
                // An overflowed queue: something changed, look.
                Err(_) => true,
            };
            if relevant {
                let _ = events.send(Event::Changed);
            }
        })?
    };
    if let Some(parent) = dir.parent() {
        // Best effort: without it, a recreated directory is found by the
        // periodic look.
        if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
            tracing::debug!(parent = %parent.display(), "not watching the parent of --config.dir: {e}");
        }
    }
    let mut watched = None;
    rewatch(&mut watcher, &dir, &mut watched);
    if watched.is_none() {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    let thread = std::thread::Builder::new()
        .name("config-watcher".into())
        .spawn(move || {
            let mut next_look = Instant::now() + every;
            loop {
                match received.recv_timeout(next_look.saturating_duration_since(Instant::now())) {
                    Ok(Event::Changed) => {
                        // Let the burst settle, then look once; a stop
                        // that arrives meanwhile still stops.
                        match settle(&received) {
                            Settled::Look => {}
                            Settled::Stop => break,
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => next_look = Instant::now() + every,
                    Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                }
                rewatch(&mut watcher, &dir, &mut watched);
                reloader.request(Trigger::Watch);
            }
        })
        .map_err(notify::Error::io)?;
    Ok(WatchHandle {
        events,
        thread: Some(thread),
    })
}

enum Settled {
    Look,
    Stop,
}

/// Waits until no change has come for `DEBOUNCE`. Used to drop a stop
/// that came in the meantime, so shutting down right after a change hung.
fn settle(received: &mpsc::Receiver<Event>) -> Settled {
    loop {
        match received.recv_timeout(DEBOUNCE) {
            Ok(Event::Changed) => {}
            Err(RecvTimeoutError::Timeout) => return Settled::Look,
            Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return Settled::Stop,
        }
    }
}

/// Keeps the watch on `dir` alive across the directory being deleted,
/// replaced or recreated: `watched` is the directory (device, inode) the
/// watch is on, `None` while there is none.
fn rewatch(watcher: &mut impl Watcher, dir: &PathBuf, watched: &mut Option<(u64, u64)>) {
    let now = std::fs::metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()));
    if now == *watched {
        return;
    }
    let _ = watcher.unwatch(dir);
    *watched = match now {
        Some(id) => match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), "watching --config.dir");
                Some(id)
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot watch --config.dir (the periodic look still applies changes): {e}");
                None
            }
        },
        None => None,
    };
}

/// Stops watching when dropped.
pub struct WatchHandle {
    events: mpsc::Sender<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Used to: a stop sent while a change settled was swallowed, and the
    /// exporter hung on exit (SIGTERM right after an edit of --config.dir).
    #[test]
    fn a_stop_during_the_settling_of_a_change_stops() {
        let (events, received) = mpsc::channel();
        events.send(Event::Changed).unwrap();
        events.send(Event::Stop).unwrap();
        assert!(matches!(settle(&received), Settled::Stop));
        events.send(Event::Changed).unwrap();
        assert!(matches!(settle(&received), Settled::Look));
    }
}
