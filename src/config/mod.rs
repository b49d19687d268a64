//! Configs: where they come from (embedded or `--config.dir`), and the
//! resolved specs the rest of the exporter works from.
//!
//! Parsing is two-staged: [`raw`] mirrors the YAML, [`validate`] checks it
//! against the program's object and produces a [`Config`]. Errors carry
//! `file:line:column` and the YAML path ([`error`]).

pub mod error;
pub mod raw;
pub mod validate;

mod attach;
mod histogram;
mod labels;
mod metric;
mod yaml;

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context};

use crate::decoders::Configured;
pub use error::{ConfigError, ConfigErrors};
pub use validate::parse;

/// A config shipped inside the binary, from `configs/<name>.yaml`.
#[derive(Debug)]
pub struct EmbeddedConfig {
    pub name: &'static str,
    pub path: &'static str,
    pub text: &'static str,
    /// In the set that runs when no `--config.names` are given (`configs/`);
    /// the others (`configs/opt-in/`) run only when named.
    pub default: bool,
}

/// The `--config.names` entry that stands for the default set, so opt-in
/// configs can be added to it (`default,syscall_latency`).
pub const DEFAULT_SET: &str = "default";

include!(concat!(env!("OUT_DIR"), "/configs.rs"));

/// The text of one config and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// File stem; also the default program name.
    pub name: String,
    /// How errors name the file: a path, or `embedded:configs/x.yaml`.
    pub origin: String,
    pub text: String,
}

/// The configs to run: the embedded default set, or all of `dir`; when
/// `names` are given, exactly those, where [`DEFAULT_SET`] stands for the
/// whole default set (every config of `dir`). An unknown name is an error
/// that lists the known ones.
pub fn sources(dir: Option<&Path>, names: Option<&[String]>) -> anyhow::Result<Vec<Source>> {
    let all: Vec<(Source, bool)> = match dir {
        None => EMBEDDED_CONFIGS
            .iter()
            .map(|c| {
                let source = Source {
                    name: c.name.to_string(),
                    origin: format!("embedded:{}", c.path),
                    text: c.text.to_string(),
                };
                (source, c.default)
            })
            .collect(),
        Some(dir) => read_dir(dir)?.into_iter().map(|s| (s, true)).collect(),
    };
    let default_set = || all.iter().filter(|(_, default)| *default).map(|(s, _)| s);
    let Some(names) = names else {
        return Ok(default_set().cloned().collect());
    };
    let mut selected: Vec<Source> = Vec::new();
    let mut select = |source: &Source| {
        if !selected.iter().any(|s| s.name == source.name) {
            selected.push(source.clone());
        }
    };
    for name in names {
        if name == DEFAULT_SET {
            default_set().for_each(&mut select);
            continue;
        }
        match all.iter().find(|(s, _)| &s.name == name) {
            Some((source, _)) => select(source),
            None => bail!(
                "--config.names: no config named {name:?} in {} (known: {}; {DEFAULT_SET} \
                 stands for the default set)",
                dir.map_or("the embedded set".to_string(), |d| d.display().to_string()),
                all.iter()
                    .map(|(s, _)| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(selected)
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<Source>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("--config.dir {}: cannot read the directory", dir.display()))?;
    let mut sources = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("--config.dir {}: cannot list the directory", dir.display()))?
            .path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".yaml"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read the config", path.display()))?;
        sources.push(Source {
            name: name.to_string(),
            origin: path.display().to_string(),
            text,
        });
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    if sources.is_empty() {
        bail!(
            "--config.dir {}: no *.yaml configs found; put one config per program there, \
             such as syscalls.yaml",
            dir.display()
        );
    }
    Ok(sources)
}

/// A validated config: everything needed to load its program and read its
/// maps, and nothing left to check.
#[derive(Debug)]
pub struct Config {
    pub name: String,
    pub origin: String,
    /// The YAML it was parsed from: a reload with the same text leaves the
    /// running config alone.
    pub text: String,
    /// Embedded program to load.
    pub program: String,
    pub metrics: Vec<MetricSpec>,
    pub attach: Vec<AttachSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricType {
    Counter,
    /// Values are read as signed 64-bit, so a per-CPU gauge that one CPU
    /// increments and another decrements sums to the right number.
    Gauge,
    Histogram(HistogramSpec),
}

/// How a histogram map's bucket keys become cumulative buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSpec {
    /// The exported buckets in increasing order: the bucket key the program
    /// writes and its upper bound (`le`) in the exported unit. A key below
    /// the first counts in the first bucket, a key between two listed ones
    /// in the next one up: both are at most that bucket's bound.
    pub buckets: Vec<(u64, f64)>,
    /// The key holding the sum of all values: the top key + 1. Any other key
    /// above the top holds overflow, which appears only in `+Inf`.
    pub sum_key: u64,
    /// Scales the sum into the exported unit (the bounds are already scaled).
    pub multiplier: f64,
}

/// A global variable of the program (`.bss` or `.data`), read from the map
/// libbpf keeps the section in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalSpec {
    /// Byte offset of the variable in the section.
    pub offset: usize,
    /// 1, 2, 4 or 8 bytes.
    pub size: usize,
    pub signed: bool,
}

/// One map (or global variable) exported as one metric family.
#[derive(Debug)]
pub struct MetricSpec {
    pub kind: MetricType,
    /// Map name in the object; for a global variable, its section's map.
    pub map: String,
    /// Set when the metric reads a global variable rather than a whole map.
    pub global: Option<GlobalSpec>,
    /// Exported name, prefix included.
    pub name: String,
    pub help: String,
    /// Labels decoded from the key, in key order. For a histogram the last
    /// one is the bucket index, which is not exported as a label.
    pub labels: Vec<LabelSpec>,
    /// Per-CPU maps only: a last label named `cpu` splits values by CPU
    /// instead of summing them. Its bytes are the CPU number, not key bytes.
    pub cpu_label: Option<LabelSpec>,
}

impl MetricSpec {
    /// Labels exported on every series: key labels (without a histogram's
    /// bucket), then `cpu` if split.
    pub fn label_names(&self) -> Vec<String> {
        self.exported_key_labels()
            .iter()
            .chain(self.cpu_label.as_ref())
            .map(|l| l.name.clone())
            .collect()
    }

    fn exported_key_labels(&self) -> &[LabelSpec] {
        match self.kind {
            MetricType::Histogram(_) => &self.labels[..self.labels.len().saturating_sub(1)],
            _ => &self.labels,
        }
    }
}

#[derive(Debug)]
pub struct LabelSpec {
    pub name: String,
    /// Offset of the label's bytes in the key.
    pub offset: usize,
    pub size: usize,
    pub decoders: Vec<Configured>,
}

impl LabelSpec {
    /// Whether a decoded value of this label may change over time.
    pub fn answer_can_change(&self) -> bool {
        self.decoders.iter().any(|d| d.decoder.answer_can_change())
    }
}

/// An explicit attach point for one BPF program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachSpec {
    Xdp {
        program: String,
        interface: String,
        mode: XdpMode,
    },
    /// A uprobe, or a uretprobe when the program's section says so.
    Uprobe {
        program: String,
        /// Absolute path of the ELF binary or library.
        binary: String,
        /// Symbol name, resolved by libbpf.
        function: String,
        /// Only this process; every process when `None`.
        pid: Option<i32>,
    },
}

impl AttachSpec {
    pub fn program(&self) -> &str {
        match self {
            AttachSpec::Xdp { program, .. } | AttachSpec::Uprobe { program, .. } => program,
        }
    }

    /// The entry's key in the config: `xdp` or `uprobe`.
    pub fn key(&self) -> &'static str {
        match self {
            AttachSpec::Xdp { .. } => "xdp",
            AttachSpec::Uprobe { .. } => "uprobe",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    Auto,
    Generic,
    Native,
    Offload,
}

impl XdpMode {
    pub const NAMES: &'static [&'static str] = &["auto", "generic", "native", "offload"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => XdpMode::Auto,
            "generic" => XdpMode::Generic,
            "native" => XdpMode::Native,
            "offload" => XdpMode::Offload,
            _ => return None,
        })
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Generic => "generic",
            XdpMode::Native => "native",
            XdpMode::Offload => "offload",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sources: &[Source]) -> Vec<&str> {
        sources.iter().map(|s| s.name.as_str()).collect()
    }

    fn embedded(default: bool) -> Vec<&'static str> {
        EMBEDDED_CONFIGS
            .iter()
            .filter(|c| c.default == default)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn without_names_the_default_set_runs_and_opt_in_configs_do_not() {
        let opt_in = embedded(false);
        assert!(opt_in.contains(&"syscall_latency"), "{opt_in:?}");
        assert_eq!(names(&sources(None, None).unwrap()), embedded(true));
    }

    #[test]
    fn default_in_names_stands_for_the_default_set_once() {
        let wanted: Vec<String> = ["syscalls", "default", "syscall_latency", "syscalls"]
            .map(String::from)
            .into();
        let mut expected = vec!["syscalls"];
        expected.extend(embedded(true).into_iter().filter(|n| *n != "syscalls"));
        expected.push("syscall_latency");
        assert_eq!(names(&sources(None, Some(&wanted)).unwrap()), expected);
    }

    #[test]
    fn an_unknown_name_lists_every_embedded_config() {
        let err = sources(None, Some(&["sycalls".to_string()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no config named \"sycalls\""), "{err}");
        assert!(
            err.contains("syscall_latency") && err.contains("default stands for"),
            "{err}"
        );
    }

    #[test]
    fn every_config_of_a_directory_is_in_its_default_set() {
        let dir = std::env::temp_dir().join(format!("bpf-exporter-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a", "b"] {
            std::fs::write(dir.join(format!("{name}.yaml")), "metrics: {}\n").unwrap();
        }
        let all = sources(Some(&dir), None).unwrap();
        let named = sources(Some(&dir), Some(&["default".to_string()])).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names(&all), ["a", "b"]);
        assert_eq!(all, named);
    }

    /// Operators choose programs from their config headers: what each
    /// measures, its series count, what the kernel must have, what an event
    /// costs, and for an opt-in config why it is not on by default.
    #[test]
    fn every_embedded_config_documents_labels_kernel_and_cost() {
        for config in EMBEDDED_CONFIGS {
            let header: Vec<&str> = config.text.lines().take_while(|l| l.starts_with('#')).collect();
            let mut wanted = vec!["# Labels:", "# Kernel:"];
            if !config.default {
                wanted.push("# Opt-in:");
            }
            for field in wanted {
                assert!(
                    header.iter().any(|l| l.starts_with(field)),
                    "{}: the header comment has no line starting {field:?}",
                    config.path
                );
            }
            let measured = header.iter().any(|l| {
                l.strip_prefix("# Cost: ~")
                    .is_some_and(|figure| figure.starts_with(|c: char| c.is_ascii_digit()))
            });
            assert!(measured, "{}: no \"# Cost: ~<figure>\" line", config.path);
        }
    }
}
