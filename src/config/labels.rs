//! A metric's `labels:` → where each label's bytes are in the map key, and
//! how they decode.
//!
//! A config names key bytes by offset and size, the C struct by field: a
//! label that splits a field or skips into the next one would decode
//! garbage without a word. Each label is therefore checked against the
//! key's BTF, and errors say in the struct's terms what to fix.

use serde_saphyr::Spanned;

use super::metric::Shape;
use super::raw::RawLabel;
use super::validate::Validator;
use super::LabelSpec;
use crate::decoders::{self, DecoderOptions};
use crate::programs::{self, KeyField, KeyLayout, MapMeta};

/// Name of the label that splits per-CPU values by CPU, as in ebpf_exporter.
pub const CPU_LABEL: &str = "cpu";

/// Bytes a label or its padding may span: far more than any key has, and
/// small enough that offsets never overflow.
const MAX_LABEL_BYTES: u64 = 4096;

/// Where one key label's bytes are.
struct Place {
    offset: usize,
    size: usize,
    /// Bytes skipped after it.
    padding: usize,
    /// Picked by field name rather than by position.
    by_name: bool,
}

/// Where in the key a byte falls, for messages: inside which field, or past
/// the last one.
fn whereabouts(field: Option<&KeyField>) -> String {
    field.map_or("past its last field".to_string(), |f| {
        format!(
            "inside field `{}` (bytes {}..{})",
            f.name,
            f.offset,
            f.offset + f.size
        )
    })
}

/// Whether a label over `start..end` covers one field and then only the
/// padding after it, as ebpf_exporter's configs often do (`size: 8` over a
/// `u16 port` and 6 bytes of padding): ebpf_exporter reads `size` bytes,
/// so the label keeps its size and decodes the same bytes. Another field
/// inside the range is still an error.
fn takes_in_padding(layout: &crate::programs::KeyLayout, start: usize, end: usize) -> bool {
    let Some(field) = layout.field_at(start) else {
        return false;
    };
    let field_end = field.offset + field.size;
    let covers_other = layout
        .fields
        .iter()
        .any(|f| f.offset >= field_end && f.offset < end);
    if field_end < end && !covers_other {
        tracing::debug!(
            field = %field.name,
            size = end - start,
            padding = end - field_end,
            "a label takes in the padding after its field, as ebpf_exporter reads it"
        );
        return true;
    }
    false
}

/// `struct key_t { pid: 0..4, comm: 4..20 }`, for messages.
fn describe(layout: &KeyLayout) -> String {
    let fields: Vec<String> = layout
        .fields
        .iter()
        .map(|f| format!("{}: {}..{}", f.name, f.offset, f.offset + f.size))
        .collect();
    format!("{} {{ {} }}", layout.type_name, fields.join(", "))
}

impl Validator<'_> {
    /// The key labels in key order, and a per-CPU map's `cpu` label (which
    /// takes no key bytes), each checked; together they must cover the key
    /// unless some pick their field by name.
    pub(super) fn labels(
        &mut self,
        path: &str,
        shape: &Shape<'_>,
        map: Option<&MapMeta>,
    ) -> (Vec<LabelSpec>, Option<LabelSpec>) {
        let percpu = map.is_some_and(|m| programs::is_percpu(m.map_type));
        let layout = map.and_then(|m| m.key.as_ref());
        let mut labels = Vec::new();
        let mut cpu_label = None;
        let mut offset = 0usize;
        let mut by_name = false;
        let count = shape.labels.len();
        for (j, label) in shape.labels.iter().enumerate() {
            let lpath = format!("{path}.labels[{j}]");
            let is_cpu = percpu && j + 1 == count && label.value.name.value == CPU_LABEL;
            if shape.labels[..j]
                .iter()
                .any(|l| l.value.name.value == label.value.name.value)
            {
                self.error(
                    label.value.name.referenced,
                    &format!("{lpath}.name"),
                    format!("label {:?} is defined twice", label.value.name.value),
                );
            }
            if is_cpu {
                // The CPU number takes no key bytes; ebpf_exporter's configs give 2.
                let size = label.value.size.as_ref().map_or(2, |s| s.value as usize);
                if !matches!(size, 1 | 2 | 4 | 8) {
                    self.error(label.referenced, &format!("{lpath}.size"), "the cpu label carries the CPU number: its size must be 1, 2, 4 or 8 (ebpf_exporter uses 2)");
                }
                cpu_label = self.label(&lpath, label, 0, size);
                continue;
            }
            let Some(place) = self.place(&lpath, label, offset, map, layout) else {
                continue;
            };
            by_name |= place.by_name;
            offset = place.offset + place.size + place.padding;
            if let Some(spec) = self.label(&lpath, label, place.offset, place.size) {
                labels.push(spec);
            }
        }
        if let Some(map) = map {
            let key_size = map.key_size as usize;
            // Labels picked by field name may leave fields out on purpose
            // (their rows are summed); otherwise they must cover the key.
            if !labels.is_empty() && !by_name && offset != key_size {
                self.error(
                    shape.at,
                    &format!("{path}.labels"),
                    format!(
                        "label sizes and padding add up to {offset} bytes but map {:?} has {key_size}-byte keys{}: \
                         make size + padding of the labels match the key struct{}",
                        map.name,
                        layout.map_or(String::new(), |l| format!(" ({})", describe(l))),
                        if percpu { " (a last label named `cpu` takes no key bytes)" } else { "" }
                    ),
                );
            }
        }
        (labels, cpu_label)
    }

    /// Where a key label's bytes are: `offset` onwards with its `size`, or
    /// the key field BTF names for it. The result is checked against the
    /// key's fields, so a config cannot drift from the C struct unnoticed.
    fn place(
        &mut self,
        path: &str,
        label: &Spanned<RawLabel>,
        offset: usize,
        map: Option<&MapMeta>,
        layout: Option<&KeyLayout>,
    ) -> Option<Place> {
        let l = &label.value;
        // Out-of-range numbers stop here, before any offset arithmetic.
        let mut in_range = true;
        if let Some(size) = l
            .size
            .as_ref()
            .filter(|s| s.value == 0 || s.value > MAX_LABEL_BYTES)
        {
            self.error(
                size.referenced,
                &format!("{path}.size"),
                format!(
                    "size {} is out of range: give the label's byte count in the key (1 to {MAX_LABEL_BYTES})",
                    size.value
                ),
            );
            in_range = false;
        }
        if let Some(padding) = l.padding.as_ref().filter(|p| p.value > MAX_LABEL_BYTES) {
            self.error(
                padding.referenced,
                &format!("{path}.padding"),
                format!(
                    "padding {} is out of range (0 to {MAX_LABEL_BYTES})",
                    padding.value
                ),
            );
            in_range = false;
        }
        if !in_range {
            return None;
        }
        let padding = l.padding.as_ref().map(|p| p.value as usize);
        let place = match (&l.size, layout) {
            (Some(size), _) => Place {
                offset,
                size: size.value as usize,
                padding: padding.unwrap_or(0),
                by_name: false,
            },
            (None, None) => {
                if map.is_some() {
                    self.error(
                        label.referenced,
                        &format!("{path}.size"),
                        "size is missing and the program's BTF does not describe this map's key: give `size`",
                    );
                }
                return None;
            }
            (None, Some(layout)) => {
                let named = layout.field_named(&l.name.value);
                let Some(field) = named.or_else(|| layout.field_at(offset)) else {
                    self.error(
                        label.referenced,
                        &format!("{path}.size"),
                        format!(
                            "size is missing and no field of the key is named {:?} or starts at byte {offset} \
                             ({}): give `size`, or name the label after a field",
                            l.name.value,
                            describe(layout)
                        ),
                    );
                    return None;
                };
                // Up to the next field (a struct hole) or the end of the key.
                let end = field.offset + field.size;
                let next = layout
                    .fields
                    .iter()
                    .map(|f| f.offset)
                    .filter(|&o| o >= end)
                    .min()
                    .unwrap_or_else(|| map.map_or(end, |m| m.key_size as usize).max(end));
                Place {
                    offset: field.offset,
                    size: field.size,
                    padding: padding.unwrap_or(next - end),
                    by_name: named.is_some(),
                }
            }
        };
        let at = l.size.as_ref().map_or(label.referenced, |s| s.referenced);
        if let Some(layout) = layout {
            let end = place.offset + place.size;
            if layout.field_at(place.offset).is_none() {
                let inside = layout.field_containing(place.offset);
                self.error(
                    at,
                    &format!("{path}.size"),
                    format!(
                        "label {:?} starts at byte {} of the key, {}: make size + padding of the labels \
                         before it match the key ({})",
                        l.name.value,
                        place.offset,
                        whereabouts(inside),
                        describe(layout)
                    ),
                );
            } else if !layout.fields.iter().any(|f| f.offset + f.size == end)
                && !takes_in_padding(layout, place.offset, end)
            {
                let inside = layout.field_containing(end.saturating_sub(1));
                self.error(
                    at,
                    &format!("{path}.size"),
                    format!(
                        "label {:?} covers bytes {}..{end} of the key, which ends {}: make its size match \
                         the key ({})",
                        l.name.value,
                        place.offset,
                        whereabouts(inside),
                        describe(layout)
                    ),
                );
            }
        }
        Some(place)
    }

    fn label(
        &mut self,
        path: &str,
        label: &Spanned<RawLabel>,
        offset: usize,
        size: usize,
    ) -> Option<LabelSpec> {
        let l = &label.value;
        let before = self.errors.len();
        if !is_label_name(&l.name.value) {
            self.error(
                l.name.referenced,
                &format!("{path}.name"),
                format!(
                    "{:?} is not a valid Prometheus label name: use letters, digits and `_`, not starting \
                     with a digit or `__`",
                    l.name.value
                ),
            );
        }
        if l.decoders.is_empty() {
            self.error(
                label.referenced,
                &format!("{path}.decoders"),
                "no decoders: add at least one, such as `decoders: [{name: uint}]`",
            );
        }
        let mut decoders = Vec::new();
        for (k, d) in l.decoders.iter().enumerate() {
            let options = DecoderOptions {
                static_map: d.value.static_map.clone(),
                regexps: d.value.regexps.clone(),
                allow_unknown: d.value.allow_unknown,
            };
            match decoders::configure(&d.value.name.value, &options) {
                Ok(decoder) => decoders.push(decoder),
                Err(message) => {
                    self.error(d.value.name.referenced, &format!("{path}.decoders[{k}]"), message)
                }
            }
        }
        (self.errors.len() == before).then(|| LabelSpec {
            name: l.name.value.clone(),
            offset,
            size,
            decoders,
        })
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::takes_in_padding;
    use crate::config::validate::testing::{assert_error, source, SYSCALLS};
    use crate::config::{parse, EMBEDDED_CONFIGS};

    #[test]
    fn label_sizes_must_add_up_to_the_key_size() {
        let text = SYSCALLS.replace("size: 8", "size: 4");
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:3:7: metrics.counters[0].labels:",
            "add up to 4 bytes but map \"syscalls_total\" has 8-byte keys",
        );
        // Sizes that add up but split the u64 key are refused by its BTF.
        let padded = SYSCALLS.replace("size: 8", "size: 4\n          padding: 4");
        assert_error(
            "syscalls",
            &padded,
            "configs/syscalls.yaml:7:17: metrics.counters[0].labels[0].size:",
            "label \"syscall\" covers bytes 0..4 of the key, which ends inside field `u64` (bytes 0..8)",
        );
    }

    #[test]
    fn unknown_decoder_is_refused_with_the_known_ones() {
        let text = SYSCALLS.replace("            - name: syscall\n", "            - name: sycsall\n");
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:10:21: metrics.counters[0].labels[0].decoders[1]:",
            "unknown decoder \"sycsall\" (known: ",
        );
    }

    #[test]
    fn decoder_options_are_type_checked() {
        let text = SYSCALLS.replace(
            "            - name: syscall\n",
            "            - name: static_map\n              static_map: [1, 2]\n",
        );
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:11:",
            "metrics.counters[0].labels[0].decoders[1].static_map",
        );
        let text = SYSCALLS.replace(
            "            - name: syscall\n",
            "            - name: syscall\n              regexps: [x]\n",
        );
        assert_error(
            "syscalls",
            &text,
            "configs/syscalls.yaml:10:21: metrics.counters[0].labels[0].decoders[1]:",
            "regexps",
        );
    }

    #[test]
    fn cpu_label_takes_no_key_bytes_on_percpu_maps_only() {
        let config = parse(
            &source(
                "xdp_packets",
                EMBEDDED_CONFIGS
                    .iter()
                    .find(|c| c.name == "xdp_packets")
                    .unwrap()
                    .text,
            ),
            "ebpf_",
        )
        .unwrap();
        let metric = &config.metrics[0];
        assert!(metric.labels.is_empty());
        assert_eq!(metric.cpu_label.as_ref().unwrap().size, 2);
        // On a shared (non per-CPU) map, `cpu` is an ordinary key label.
        let text = SYSCALLS.replace("\n        - name: syscall\n", "\n        - name: cpu\n");
        let config = parse(&source("syscalls", &text), "ebpf_").unwrap();
        assert_eq!(config.metrics[0].labels[0].name, "cpu");
        assert!(config.metrics[0].cpu_label.is_none());
    }

    const LATENCY: &str = "metrics:
  histograms:
    - name: syscall_latency_seconds
      help: Latency.
      bucket_type: exp2
      bucket_max: 36
      labels:
        - name: syscall
          decoders: [{name: uint}]
        - name: bucket
          decoders: [{name: uint}]
";

    fn offsets(text: &str) -> Vec<(String, usize, usize)> {
        let config = parse(&source("syscall_latency", text), "ebpf_").unwrap_or_else(|e| panic!("{e}"));
        config.metrics[0]
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.offset, l.size))
            .collect()
    }

    #[test]
    fn labels_without_size_take_the_key_fields_from_btf() {
        // struct syscall_latency_key { u32 syscall; u32 bucket; }
        assert_eq!(
            offsets(LATENCY),
            [("syscall".into(), 0, 4), ("bucket".into(), 4, 4)]
        );
        // Not named after a field: the next field in order.
        assert_eq!(
            offsets(&LATENCY.replace("name: syscall\n", "name: nr\n")),
            [("nr".into(), 0, 4), ("bucket".into(), 4, 4)]
        );
        // By name, a field may be left out: its rows are summed.
        let bucket_only = LATENCY.replace(
            "        - name: syscall\n          decoders: [{name: uint}]\n",
            "",
        );
        assert_eq!(offsets(&bucket_only), [("bucket".into(), 4, 4)]);
    }

    #[test]
    fn a_label_may_take_in_the_padding_after_its_field_but_not_another_field() {
        use crate::programs::{KeyField, KeyLayout};
        let field = |name: &str, offset, size| KeyField {
            name: name.into(),
            offset,
            size,
        };
        // struct { u16 port; /* 6 bytes of padding */ u64 id; }
        let layout = KeyLayout {
            type_name: "struct key".into(),
            fields: vec![field("port", 0, 2), field("id", 8, 8)],
        };
        assert!(takes_in_padding(&layout, 0, 8));
        assert!(!takes_in_padding(&layout, 0, 2 + 6 + 1), "runs into id");
        assert!(!takes_in_padding(&layout, 1, 8), "starts inside port");
        assert!(
            !takes_in_padding(&layout, 8, 16),
            "ends where id ends: not padding"
        );
    }

    #[test]
    fn label_sizes_are_checked_against_the_key_struct() {
        let text = LATENCY.replace(
            "        - name: syscall\n",
            "        - name: syscall\n          size: 2\n          padding: 2\n",
        );
        assert_error(
            "syscall_latency",
            &text,
            "configs/syscall_latency.yaml:9:17: metrics.histograms[0].labels[0].size:",
            "label \"syscall\" covers bytes 0..2 of the key, which ends inside field `syscall` (bytes 0..4): \
             make its size match the key (struct syscall_latency_key { syscall: 0..4, bucket: 4..8 })",
        );
        let text = LATENCY
            .replace(
                "        - name: syscall\n",
                "        - name: syscall\n          size: 2\n",
            )
            .replace(
                "        - name: bucket\n",
                "        - name: bucket\n          size: 4\n",
            );
        assert_error(
            "syscall_latency",
            &text,
            "configs/syscall_latency.yaml:12:17: metrics.histograms[0].labels[1].size:",
            "label \"bucket\" starts at byte 2 of the key, inside field `syscall` (bytes 0..4)",
        );
    }

    #[test]
    fn zero_and_huge_label_sizes_are_refused_without_overflow() {
        // Found by the config fuzz target: size 0 against a BTF-typed key
        // underflowed while naming the field the label ends in.
        for size in ["0", "18446744073709551615"] {
            assert_error(
                "syscalls",
                &SYSCALLS.replace("size: 8", &format!("size: {size}")),
                "configs/syscalls.yaml:7:17: metrics.counters[0].labels[0].size:",
                &format!("size {size} is out of range"),
            );
        }
        assert_error(
            "syscalls",
            &SYSCALLS.replace("size: 8", "size: 8\n          padding: 18446744073709551615"),
            "configs/syscalls.yaml:8:20: metrics.counters[0].labels[0].padding:",
            "padding 18446744073709551615 is out of range",
        );
    }
}
