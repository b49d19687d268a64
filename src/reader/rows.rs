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
                None => Err(DecodeError::Invalid(format!(
                    "key of {} bytes has no bytes for label {}",
                    key.len(),
                    label.name
                ))),
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
            None => add(
                &mut rows,
                labels,
                values.iter().fold(0u64, |a, v| a.wrapping_add(*v)),
            ),
        }
    }
    let samples = rows
        .into_iter()
        .map(|(label_values, value)| Sample {
            label_values,
            value: Value::Counter(value),
        })
        .collect();
    let kind = match spec.kind {
        MetricType::Counter => MetricKind::Counter,
    };
    let family = Family {
        name: spec.name.clone(),
        help: spec.help.clone(),
        kind,
        label_names: spec.label_names(),
        samples,
    };
    (family, stats)
}

/// Counters wrap like the u64 they are read from, never panic.
fn add(rows: &mut BTreeMap<Vec<String>, u64>, labels: Vec<String>, value: u64) {
    let slot = rows.entry(labels).or_insert(0);
    *slot = slot.wrapping_add(value);
}

fn decode_label(label: &LabelSpec, bytes: &[u8]) -> Result<String, DecodeError> {
    let decoded = decode_chain(&label.decoders, bytes)?;
    String::from_utf8(decoded).map_err(|_| {
        DecodeError::Invalid(format!(
            "label {} decoded to invalid UTF-8; end the chain with a text decoder",
            label.name
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Source};

    fn spec(program: &str, labels: &str) -> MetricSpec {
        let map = if program == "xdp_packets" {
            "xdp_packets_total"
        } else {
            "syscalls_total"
        };
        let attach = if program == "xdp_packets" {
            "attach:\n  - program: count_packets\n    xdp: {interface: lo}\n"
        } else {
            ""
        };
        let text = format!(
            "metrics:\n  counters:\n    - name: {map}\n      help: h\n      labels:\n{labels}{attach}"
        );
        let source = Source {
            name: program.into(),
            origin: "test.yaml".into(),
            text,
        };
        parse(&source, "ebpf_")
            .unwrap_or_else(|e| panic!("{e}"))
            .metrics
            .remove(0)
    }

    fn dump(key_size: usize, cpus: usize, rows: &[(u64, &[u64])]) -> MapDump {
        let mut dump = MapDump::new(key_size, cpus);
        for (key, values) in rows {
            dump.push(&key.to_le_bytes()[..key_size], values);
        }
        dump
    }

    fn values(family: &Family) -> Vec<(Vec<String>, u64)> {
        family
            .samples
            .iter()
            .map(|s| match s.value {
                Value::Counter(v) => (s.label_values.clone(), v),
                ref v => panic!("{v:?}"),
            })
            .collect()
    }

    const SLOT: &str = "        - name: slot\n          size: 4\n          decoders: [{name: uint}]\n";
    const CPU: &str = "        - name: cpu\n          size: 2\n          decoders: [{name: uint}]\n";

    #[test]
    fn per_cpu_values_are_summed_without_a_cpu_label() {
        let (family, stats) = family(
            &spec("xdp_packets", SLOT),
            &dump(4, 3, &[(0, &[1, 2, 3]), (1, &[10, 0, 5])]),
        );
        assert_eq!(values(&family), [(vec!["0".into()], 6), (vec!["1".into()], 15)]);
        assert_eq!(stats, RowStats::default());
    }

    #[test]
    fn per_cpu_values_are_split_by_a_last_cpu_label() {
        let spec = spec("xdp_packets", &format!("{SLOT}{CPU}"));
        assert_eq!(spec.label_names(), ["slot", "cpu"]);
        let (family, _) = family(&spec, &dump(4, 3, &[(7, &[1, 2, 3])]));
        let expected: Vec<(Vec<String>, u64)> = (0..3)
            .map(|cpu| (vec!["7".to_string(), cpu.to_string()], cpu as u64 + 1))
            .collect();
        assert_eq!(values(&family), expected);
    }

    #[test]
    fn cpu_label_alone_splits_and_no_labels_sums_everything() {
        let (family, _) = family(&spec("xdp_packets", CPU), &dump(4, 2, &[(0, &[4, 6])]));
        assert_eq!(values(&family), [(vec!["0".into()], 4), (vec!["1".into()], 6)]);
        let text = "metrics:\n  counters:\n    - name: xdp_packets_total\n      help: h\nattach:\n  - program: count_packets\n    xdp: {interface: lo}\n";
        let source = Source {
            name: "xdp_packets".into(),
            origin: "t".into(),
            text: text.into(),
        };
        let spec = parse(&source, "ebpf_").unwrap().metrics.remove(0);
        let (family, _) = super::family(&spec, &dump(4, 2, &[(0, &[4, 6])]));
        assert_eq!(values(&family), [(vec![], 10)]);
    }

    #[test]
    fn rows_with_equal_decoded_labels_are_summed() {
        let labels = "        - name: op\n          size: 8\n          decoders:\n            - name: uint\n            - name: static_map\n              static_map: {1: read, 2: read, 3: write}\n";
        let (family, _) = family(
            &spec("syscalls", labels),
            &dump(8, 1, &[(1, &[5]), (2, &[7]), (3, &[1])]),
        );
        assert_eq!(
            values(&family),
            [(vec!["read".into()], 12), (vec!["write".into()], 1)]
        );
    }

    #[test]
    fn allow_list_drops_rows_without_counting_errors() {
        let labels = "        - name: syscall\n          size: 8\n          decoders:\n            - name: uint\n            - name: syscall\n            - name: regexp\n              regexps: ['^read$']\n";
        let (family, stats) = family(&spec("syscalls", labels), &dump(8, 1, &[(0, &[3]), (1, &[4])]));
        assert_eq!(values(&family), [(vec!["read".into()], 3)]);
        assert_eq!(
            stats,
            RowStats {
                decode_errors: 0,
                skipped: 1
            }
        );
    }

    #[test]
    fn undecodable_rows_are_dropped_and_counted() {
        // `string` refuses invalid UTF-8.
        let labels = "        - name: name\n          size: 8\n          decoders: [{name: string}]\n";
        let (family, stats) = family(
            &spec("syscalls", labels),
            &dump(8, 1, &[(0x6b6f, &[1]), (0xff, &[2])]),
        );
        assert_eq!(values(&family), [(vec!["ok".into()], 1)]);
        assert_eq!(stats.decode_errors, 1);
    }
}
