//! Event counters (ebpf_exporter's `perf_event_array: true`): the program
//! writes one event per occurrence into a perf event array (or a ring
//! buffer), and each
//! event's bytes are a label set counted once here. The counts are then
//! read like a map's, so decoding, the label cache and the exposition are
//! the same as for any counter.
//!
//! A thread per map takes the events as they come (the perf buffer is
//! read, not polled by the reader's interval, or it would overflow). Events
//! the kernel could not hand over because the buffer was full are counted
//! as lost, where ebpf_exporter drops them unseen.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapHandle, MapType, PerfBufferBuilder, RingBufferBuilder};

use super::maps::{MapDump, MapSource, ReadMethod};

/// How long the event thread waits for events before looking at whether
/// it should stop.
const POLL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Counts {
    by_event: HashMap<Vec<u8>, u64>,
    lost: u64,
    /// Events shorter than the labels' bytes: a config that does not fit
    /// the program's event struct.
    short: u64,
}

/// The counts of one event stream, kept current by its thread.
pub struct EventCounts {
    counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Bytes of each event the labels decode.
    key_size: usize,
    flush_interval: Option<Duration>,
    flushed_at: Instant,
    /// A ring buffer: the kernel tells no one of events it could not take
    /// (`bpf_ringbuf_output` fails in the program), so none are counted.
    ring: bool,
}

impl EventCounts {
    /// Opens the perf buffer of `map` (one per CPU) and counts its events,
    /// each by its first `key_size` bytes.
    pub fn new(map: &MapHandle, key_size: usize, flush_interval: Option<Duration>) -> io::Result<Self> {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let count = {
            let counts = Arc::clone(&counts);
            move |data: &[u8]| {
                let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
                match data.get(..key_size) {
                    Some(event) => *counts.by_event.entry(event.to_vec()).or_default() += 1,
                    None => counts.short += 1,
                }
            }
        };
        let poll: Box<dyn Fn(Duration) -> libbpf_rs::Result<()> + Send> =
            if map.map_type() == MapType::RingBuf {
                let mut builder = RingBufferBuilder::new();
                builder
                    .add(map, move |data| {
                        count(data);
                        0
                    })
                    .map_err(|e| io::Error::other(format!("opening its ring buffer: {e}")))?;
                let ring = builder
                    .build()
                    .map_err(|e| io::Error::other(format!("opening its ring buffer: {e}")))?;
                Box::new(move |timeout| ring.poll(timeout))
            } else {
                let on_lost = Arc::clone(&counts);
                let buffer = PerfBufferBuilder::new(map)
                    .sample_cb(move |_cpu, data: &[u8]| count(data))
                    .lost_cb(move |_cpu, n| {
                        on_lost.lock().unwrap_or_else(PoisonError::into_inner).lost += n;
                    })
                    .build()
                    .map_err(|e| io::Error::other(format!("opening its perf buffer: {e}")))?;
                Box::new(move |timeout| buffer.poll(timeout))
            };
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let name = map.name().to_string_lossy().into_owned();
        let thread = std::thread::Builder::new()
            .name("bpf-events".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    if let Err(e) = poll(POLL) {
                        if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                            tracing::warn!(map = %name, "reading events failed: {e}");
                            std::thread::sleep(POLL);
                        }
                    }
                }
            })?;
        let ring = map.map_type() == MapType::RingBuf;
        Ok(EventCounts {
            counts,
            stop,
            thread: Some(thread),
            key_size,
            flush_interval,
            flushed_at: Instant::now(),
            ring,
        })
    }
}

impl Drop for EventCounts {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl MapSource for EventCounts {
    /// The counts so far, as one entry per distinct event; after
    /// `flush_interval` they start again from zero, as in ebpf_exporter.
    fn read(&mut self) -> io::Result<MapDump> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dump = MapDump::new(self.key_size, 1);
        for (event, n) in &counts.by_event {
            dump.push(event, &[*n]);
        }
        if self
            .flush_interval
            .is_some_and(|every| self.flushed_at.elapsed() >= every)
        {
            counts.by_event.clear();
            self.flushed_at = Instant::now();
        }
        if counts.short > 0 {
            let short = std::mem::take(&mut counts.short);
            tracing::warn!(
                short,
                key_size = self.key_size,
                "events shorter than the labels' sizes add up to were dropped: make the labels fit the event struct"
            );
        }
        Ok(dump)
    }

    fn method(&self) -> ReadMethod {
        ReadMethod::Events
    }

    fn lost(&self) -> Option<u64> {
        (!self.ring).then(|| self.counts.lock().unwrap_or_else(PoisonError::into_inner).lost)
    }
}
