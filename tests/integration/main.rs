//! All integration tests, in one binary. The `kernel` tests load the real
//! programs into the running kernel, drive a known number of events and
//! check the exported numbers; they need root (CI runs as root).

mod binary;
mod common;
mod kernel;
mod maps;
mod programs;
