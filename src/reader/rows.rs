//! Map entries → one metric family: split each key into labels, run the
//! decoder chains, sum or split per-CPU values, and sum rows whose decoded
//! labels are equal (two keys may decode to the same label set, such as two
//! unknown syscall numbers under a `static_map` without `allow_unknown`).

use std::collections::BTreeMap;

use crate::config::{LabelSpec, MetricSpec, MetricType};
use crate::decoders::{decode_chain, DecodeError};
use crate::metrics::{Family, MetricKind, Sample, Value};

use super::maps::MapDump;

/// Why rows were left out of a family.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowStats {
    /// Rows a decoder could not decode (counted as decode errors).
    pub decode_errors: u64,
    /// Rows an allow-list (`regexp`) dropped on purpose.
    pub skipped: u64,
}

pub fn family(spec: &MetricSpec, dump: &MapDump) -> (Family, RowStats) {
    let mut stats = RowStats::default();
    let mut rows: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    // The CPU labels are the same for every row: decode them once.
    let cpu_values: Option<Vec<Option<String>>> = spec.cpu_label.as_ref().map(|label| {
        (0..dump.values_per_entry)
            .map(|cpu| decode_label(label, &(cpu as u64).to_le_bytes()[..label.size.min(8)]).ok())
            .collect()
    });
    for (key, values) in dump.entries() {
        let labels: Result<Vec<String>, DecodeError> = spec
            .labels
            .iter()
            .map(|label| match key.get(label.offset..label.offset + label.size) {
                Some(bytes) => decode_label(label, bytes),
                None => Err(DecodeError::Invalid(format!("key of {} bytes has no bytes for label {}", key.len(), label.name))),
            })
            .collect();
        let labels = match labels {
            Ok(labels) => labels,
            Err(DecodeError::Skip) => {
                stats.skipped += 1;
                continue;
            }
            Err(DecodeError::Invalid(message)) => {
                tracing::debug!(metric = %spec.name, "row dropped: {message}");
                stats.decode_errors += 1;
                continue;
            }
        };
        match &cpu_values {
            Some(cpus) => {
                for (value, cpu) in values.iter().zip(cpus) {
                    let Some(cpu) = cpu else {
                        stats.decode_errors += 1;
                        continue;
                    };
                    let mut labels = labels.clone();
                    labels.push(cpu.clone());
                    add(&mut rows, labels, *value);
                }
            }
            None => add(&mut rows, labels, values.iter().fold(0u64, |a, v| a.wrapping_add(*v))),
        }
    }
    let samples = rows
        .into_iter()
        .map(|(label_values, value)| Sample { label_values, value: Value::Counter(value) })
        .collect();
    let kind = match spec.kind {
        MetricType::Counter => MetricKind::Counter,
    };
    let family = Family { name: spec.name.clone(), help: spec.help.clone(), kind, label_names: spec.label_names(), samples };
    (family, stats)
}

/// Counters wrap like the u64 they are read from, never panic.
fn add(rows: &mut BTreeMap<Vec<String>, u64>, labels: Vec<String>, value: u64) {
    let slot = rows.entry(labels).or_insert(0);
    *slot = slot.wrapping_add(value);
}

fn decode_label(label: &LabelSpec, bytes: &[u8]) -> Result<String, DecodeError> {
    let decoded = decode_chain(&label.decoders, bytes)?;
    String::from_utf8(decoded)
        .map_err(|_| DecodeError::Invalid(format!("label {} decoded to invalid UTF-8; end the chain with a text decoder", label.name)))
}
