//! Embedded programs.

/// A BPF object compiled by `build.rs` from `bpf/<name>.bpf.c`.
#[derive(Debug)]
pub struct EmbeddedProgram {
    pub name: &'static str,
    pub object: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/programs.rs"));
