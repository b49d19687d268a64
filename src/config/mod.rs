//! Configs: where they come from (embedded or `--config.dir`), and the
//! resolved specs the rest of the exporter works from.
//!
//! Parsing is two-staged: [`raw`] mirrors the YAML, [`validate`] checks it
//! against the program's object and produces a [`Config`]. Errors carry
//! `file:line:column` and the YAML path ([`error`]).

pub mod error;
pub mod raw;
pub mod validate;

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context};

use crate::decoders::Decoder;
pub use error::{ConfigError, ConfigErrors};
pub use validate::parse;

/// A config shipped inside the binary, from `configs/<name>.yaml`.
#[derive(Debug)]
pub struct EmbeddedConfig {
    pub name: &'static str,
    pub path: &'static str,
    pub text: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/configs.rs"));

/// The text of one config and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// File stem; also the default program name.
    pub name: String,
    /// How errors name the file: a path, or `embedded:configs/x.yaml`.
    pub origin: String,
    pub text: String,
}

/// The configs to run: all of `dir` (or the embedded set), narrowed to
/// `names` when given. An unknown name is an error that lists the known ones.
pub fn sources(dir: Option<&Path>, names: Option<&[String]>) -> anyhow::Result<Vec<Source>> {
    let all = match dir {
        None => EMBEDDED_CONFIGS
            .iter()
            .map(|c| Source {
                name: c.name.to_string(),
                origin: format!("embedded:{}", c.path),
                text: c.text.to_string(),
            })
            .collect(),
        Some(dir) => read_dir(dir)?,
    };
    let Some(names) = names else { return Ok(all) };
    let mut selected = Vec::new();
    for name in names {
        match all.iter().find(|s| &s.name == name) {
            Some(source) => selected.push(source.clone()),
            None => bail!(
                "--config.names: no config named {name:?} in {} (known: {})",
                dir.map_or("the embedded set".to_string(), |d| d.display().to_string()),
                all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
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
    /// Embedded program to load.
    pub program: String,
    pub metrics: Vec<MetricSpec>,
    pub attach: Vec<AttachSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
}

/// One map exported as one metric family.
#[derive(Debug)]
pub struct MetricSpec {
    pub kind: MetricType,
    /// Map name in the object.
    pub map: String,
    /// Exported name, prefix included.
    pub name: String,
    pub help: String,
    /// Labels decoded from the key, in key order.
    pub labels: Vec<LabelSpec>,
    /// Per-CPU maps only: a last label named `cpu` splits values by CPU
    /// instead of summing them. Its bytes are the CPU number, not key bytes.
    pub cpu_label: Option<LabelSpec>,
}

impl MetricSpec {
    /// Label names as exported: key labels, then `cpu` if split.
    pub fn label_names(&self) -> Vec<String> {
        self.labels
            .iter()
            .chain(self.cpu_label.as_ref())
            .map(|l| l.name.clone())
            .collect()
    }
}

#[derive(Debug)]
pub struct LabelSpec {
    pub name: String,
    /// Offset of the label's bytes in the key.
    pub offset: usize,
    pub size: usize,
    pub decoders: Vec<Box<dyn Decoder>>,
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
