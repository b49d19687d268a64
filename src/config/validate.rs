//! Raw YAML → [`Config`], checked against the program's object.
//!
//! Every problem in a file is collected before reporting, so one run of
//! `--config.check` shows them all. Each part of a config is checked in a
//! module of its own (`yaml`, `metric`, `labels`, `histogram`, `attach`,
//! `pin`, …); `parse` runs them in order, all adding to the one `Validator`
//! of the file.

use serde_saphyr::Location;

use super::{yaml, Config, ConfigError, ConfigErrors, Source};
use crate::programs::{self, ProgramObject};

pub use super::labels::CPU_LABEL;

/// Parses and validates one config; `prefix` is prepended to metric names.
pub fn parse(source: &Source, prefix: &str) -> Result<Config, ConfigErrors> {
    let file = source.origin.as_str();
    let raw = yaml::deserialize(file, &source.text).map_err(|e| ConfigErrors(vec![e]))?;

    let mut v = Validator {
        file,
        errors: Vec::new(),
    };
    let object = object(source, &raw)?;
    let info = match &object {
        ProgramObject::Pinned(pins) => programs::pinned::inspect(pins).map_err(|errors| {
            let entries: Vec<_> = raw.pinned.iter().flat_map(|p| p.value.iter()).collect();
            ConfigErrors(
                errors
                    .into_iter()
                    .map(|(i, message)| {
                        let (name, path) = entries[i];
                        ConfigError::at(file, path.referenced, format!("pinned.{name}"), message)
                    })
                    .collect(),
            )
        })?,
        _ => programs::inspect(object.name(), object.bytes()).map_err(|e| {
            let message = if !object.bytes().starts_with(b"\x7fELF") && matches!(object, ProgramObject::File { .. }) {
                format!(
                    "{} is not a BPF object (an ELF file): build it with `clang -O2 -g -target bpf -c x.bpf.c -o x.bpf.o`",
                    object.describe()
                )
            } else {
                format!("{}: {e:#}", object.describe())
            };
            ConfigErrors(vec![ConfigError::file_level(file, message)])
        })?,
    };

    let metrics = v.metrics(&raw.metrics, &info, prefix);
    let attach = v.attach_entries(&raw.attach, &info);
    let kaddrs = v.kaddrs(raw.kaddrs.as_ref(), &info);
    let cgroup_id_map = v.cgroup_id_map(raw.cgroup_id_map.as_ref(), &info);
    let pin_maps = v.pin(
        raw.pin.as_ref(),
        &source.name,
        &raw.metrics.value,
        &metrics,
        &info,
    );
    let cpu_budget = v.cpu_budget(raw.cpu_budget.as_ref());
    v.unsupported(&raw);

    if v.errors.is_empty() {
        Ok(Config {
            name: source.name.clone(),
            origin: source.origin.clone(),
            text: source.text.clone(),
            program: object.describe(),
            sections: info.programs.iter().map(|p| p.section.clone()).collect(),
            object,
            metrics,
            attach,
            kaddrs,
            cgroup_id_map,
            series_limit: raw.series_limit,
            pin_maps,
            cpu_budget,
        })
    } else {
        Err(ConfigErrors(v.errors))
    }
}

/// The object `source` runs: the file it names in `object:` or that lies
/// beside it (read with the file), else the embedded program `program:`
/// names, else the embedded program of its own name.
fn object(source: &Source, raw: &super::raw::RawConfig) -> Result<ProgramObject, ConfigErrors> {
    let file = source.origin.as_str();
    let fail = |error| Err(ConfigErrors(vec![error]));
    if let Some(pinned) = &raw.pinned {
        if raw.object.is_some() || raw.program.is_some() {
            return fail(ConfigError::at(
                file,
                pinned.referenced,
                "pinned",
                "a config of pinned maps runs no program: remove `program:` and `object:`, or `pinned:`",
            ));
        }
        if let Some(pin) = raw.pin.as_ref().filter(|p| p.value) {
            return fail(ConfigError::at(
                file,
                pin.referenced,
                "pin",
                "a config of pinned maps runs no program and makes no map to pin: remove `pin`",
            ));
        }
        if let Some(budget) = &raw.cpu_budget {
            return fail(ConfigError::at(
                file,
                budget.referenced,
                "cpu_budget",
                "a config of pinned maps runs no program, so there is no CPU time to budget: remove cpu_budget",
            ));
        }
        let mut pins = Vec::new();
        for (name, path) in &pinned.value {
            if !path.value.starts_with('/') {
                return fail(ConfigError::at(
                    file,
                    path.referenced,
                    format!("pinned.{name}"),
                    format!(
                        "{:?} is not an absolute path: give the pin's path in bpffs, such as /sys/fs/bpf/…",
                        path.value
                    ),
                ));
            }
            pins.push((name.clone(), std::path::PathBuf::from(&path.value)));
        }
        return Ok(ProgramObject::Pinned(pins));
    }
    match (&raw.object, &raw.program, &source.object) {
        (Some(object), Some(_), _) => fail(ConfigError::at(
            file,
            object.referenced,
            "object",
            "give `program:` (a program embedded in the exporter) or `object:` (a compiled file), not both",
        )),
        (Some(object), None, None) => fail(ConfigError::at(
            file,
            object.referenced,
            "object",
            format!(
                "{:?} was not read: only a config of --config.dir can name an object file, \
                 relative to that directory",
                object.value
            ),
        )),
        (_, None, Some(read)) => Ok(ProgramObject::file(read.clone())),
        (_, program, _) => {
            let name = program
                .as_ref()
                .map_or(source.name.as_str(), |p| p.value.as_str());
            if let Some(embedded) = programs::find(name) {
                return Ok(ProgramObject::Embedded(embedded));
            }
            let message = format!(
                "no embedded program named {name:?} (embedded: {}); {}",
                programs::embedded_names().join(", "),
                if program.is_some() {
                    "name one of them in `program:`, or a compiled file in `object:`"
                } else {
                    "name one of them in `program:`, put the compiled object beside the config as \
                     <name>.bpf.o, or name it in `object:`"
                }
            );
            fail(match program {
                Some(p) => ConfigError::at(file, p.referenced, "program", message),
                None => ConfigError::file_level(file, message),
            })
        }
    }
}

/// Every error of one file, each with its place: the checks of every part
/// of a config add to it, so none stops the others.
pub(super) struct Validator<'a> {
    pub(super) file: &'a str,
    pub(super) errors: Vec<ConfigError>,
}

impl Validator<'_> {
    pub(super) fn error(&mut self, location: Location, path: &str, message: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.file, location, path, message));
    }
}

/// What the tests of every part of a config share: a text parsed as
/// `configs/<name>.yaml`, its errors as the user reads them, and the configs
/// more than one part is checked on.
#[cfg(test)]
pub(crate) mod testing {
    use super::parse;
    use crate::config::Source;

    pub fn source(name: &str, text: &str) -> Source {
        Source {
            name: name.into(),
            origin: format!("configs/{name}.yaml"),
            text: text.into(),
            ..Default::default()
        }
    }

    pub fn errors(name: &str, text: &str) -> Vec<String> {
        match parse(&source(name, text), "ebpf_") {
            Ok(_) => panic!("config was accepted:\n{text}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// Asserts one error whose text starts with `place` and contains `needle`.
    pub fn assert_error(name: &str, text: &str, place: &str, needle: &str) {
        let errors = errors(name, text);
        assert!(
            errors.iter().any(|e| e.starts_with(place) && e.contains(needle)),
            "no error at {place:?} containing {needle:?} in:\n{}",
            errors.join("\n")
        );
    }

    pub const SYSCALLS: &str = "metrics:
  counters:
    - name: syscalls_total
      help: Syscalls.
      labels:
        - name: syscall
          size: 8
          decoders:
            - name: uint
            - name: syscall
";

    /// A histogram over the syscalls program's u64-keyed map: enough to
    /// check every histogram setting without a dedicated object.
    pub const HISTOGRAM: &str = "metrics:
  histograms:
    - name: syscalls_total
      help: Buckets.
      bucket_type: exp2
      bucket_min: 2
      bucket_max: 4
      bucket_multiplier: 0.5
      labels:
        - name: bucket
          size: 8
          decoders: [{name: uint}]
";
}

#[cfg(test)]
mod tests {
    use super::testing::{assert_error, errors, source, SYSCALLS};
    use super::*;
    use crate::config::EMBEDDED_CONFIGS;

    #[test]
    fn shipped_configs_are_valid() {
        for embedded in EMBEDDED_CONFIGS {
            let src = Source {
                name: embedded.name.into(),
                origin: embedded.path.into(),
                text: embedded.text.into(),
                ..Default::default()
            };
            if let Err(e) = parse(&src, "ebpf_") {
                panic!("{e}");
            }
        }
    }

    #[test]
    fn every_error_of_a_file_is_reported_at_once() {
        let text = SYSCALLS
            .replace("            - name: syscall\n", "            - name: nope\n")
            .replace("help: Syscalls.", "help: \" \"");
        let errors = errors("syscalls", &text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("help is empty") && errors[1].contains("unknown decoder \"nope\""));
    }

    #[test]
    fn unknown_program_names_the_embedded_ones() {
        assert_error(
            "nosuch",
            SYSCALLS,
            "configs/nosuch.yaml: ",
            "no embedded program named \"nosuch\"",
        );
        let named = format!("program: syscals\n{SYSCALLS}");
        assert_error(
            "x",
            &named,
            "configs/x.yaml:1:10: program:",
            "no embedded program named \"syscals\"",
        );
        let renamed = format!("program: syscalls\n{SYSCALLS}");
        assert_eq!(
            parse(&source("mine", &renamed), "ebpf_").unwrap().program,
            "syscalls"
        );
    }

    #[test]
    fn no_input_panics() {
        let inputs = [
            "",
            "-",
            "---\n---\n",
            "metrics:",
            "metrics:\n  counters:\n",
            "metrics:\n  counters: [1]\n",
            "\u{0}",
            "&a [*a]",
            "metrics: &x {counters: *x}",
            "a: b: c",
        ];
        for input in inputs {
            let _ = parse(&source("syscalls", input), "ebpf_");
        }
    }
}
