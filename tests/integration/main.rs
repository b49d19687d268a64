//! All integration tests, in one binary. The `kernel` tests load the real
//! programs into the running kernel, drive a known number of events and
//! check the exported numbers; they need root (CI runs as root). The `truth`
//! tests drive a target process through uprobes and hold every exported
//! series to an exact model.

mod binary;
mod bpf_build;
mod common;
mod compat;
mod dashboards;
mod golden;
mod guards;
mod kernel;
mod library_network;
mod library_system;
mod lifecycle;
mod maps;
mod objects;
mod oom;
mod packaging;
mod pin;
mod pinned;
mod privileges;
mod programs;
mod prometheus;
mod reload;
mod static_binary;
mod toolchain;
mod truth;
mod web;
mod workload;
