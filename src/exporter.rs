//! Assembly: config sources → validated configs → loaded programs → a
//! [`Reader`]. Shared by the binary, `--config.check` and the tests, so they
//! all run the same path.

use crate::config::{self, Source};
use crate::metrics::{ConfigState, ConfigStatus};
use crate::programs::loader;
use crate::reader::maps::ReadMethod;
use crate::reader::Reader;

/// What happened to one config.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: ConfigStatus,
}

impl Outcome {
    /// Running with every program attached.
    pub fn is_good(&self) -> bool {
        self.status.state == ConfigState::Running && self.status.programs.iter().all(|p| p.attached)
    }
}

/// Parses, loads and attaches every source; failures are recorded in the
/// outcomes and in the reader's statuses, never fatal here.
pub fn assemble(sources: &[Source], prefix: &str, method: ReadMethod) -> (Reader, Vec<Outcome>) {
    let mut reader = Reader::new();
    let outcomes = sources
        .iter()
        .map(|source| {
            let outcome = apply(&mut reader, source, prefix, method);
            if outcome.status.state != ConfigState::Running {
                reader.add_failed(outcome.status.clone(), &source.text);
            }
            outcome
        })
        .collect();
    (reader, outcomes)
}

/// Parses, loads and attaches one source and hands it to `reader`, where it
/// replaces a running config of the same name only once it is attached. On
/// failure the reader is left as it was and the status says why.
pub fn apply(reader: &mut Reader, source: &Source, prefix: &str, method: ReadMethod) -> Outcome {
    let failed = |state, program: String, error: String| ConfigStatus {
        name: source.name.clone(),
        source: source.origin.clone(),
        program,
        state,
        error: Some(error),
        programs: Vec::new(),
    };
    let status = match config::parse(source, prefix) {
        Err(errors) => failed(ConfigState::Invalid, String::new(), errors.to_string()),
        Ok(config) => match loader::load(&config) {
            Err(error) => failed(ConfigState::Failed, config.program.clone(), error),
            Ok(loaded) => {
                let status = loaded.status(&config);
                let program = config.program.clone();
                if status.state != ConfigState::Running {
                    // Nothing attached: not worth replacing anything with.
                    status
                } else {
                    match reader.add(config, loaded, method) {
                        Ok(()) => status,
                        Err(error) => failed(ConfigState::Failed, program, error),
                    }
                }
            }
        },
    };
    Outcome { status }
}

/// The `--config.check` report: one block per config.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let s = &o.status;
        let verdict = if o.is_good() { "ok" } else { "FAILED" };
        out.push_str(&format!(
            "{verdict:<6} {} ({}) {}\n",
            s.name,
            s.source,
            s.state.as_str()
        ));
        if let Some(error) = &s.error {
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
