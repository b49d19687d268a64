//! Any text given as a config must come back as a `Config` or as located
//! errors, never as a panic: configs come from users, and a reload with a
//! bad one must leave the exporter running.
//!
//! The config is checked against the embedded program it names first as
//! `bpf/<name>.bpf.c` (each file of `configs/`, the seed corpus, names its
//! own in its opening comment), or `syscalls`; a `program:` key in the text
//! overrides that, as in a real file.

#![no_main]

use bpf_exporter::config::{self, Source};
use bpf_exporter::programs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let name = programs::embedded_names()
        .into_iter()
        .filter_map(|name| text.find(&format!("bpf/{name}.bpf.c")).map(|at| (at, name)))
        .min()
        .map_or("syscalls", |(_, name)| name);
    let source = Source {
        name: name.to_string(),
        origin: format!("fuzz:{name}.yaml"),
        text,
        ..Default::default()
    };
    let _ = config::parse(&source, "ebpf_");
});
