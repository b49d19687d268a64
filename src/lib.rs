//! bpf-exporter: turns eBPF maps into Prometheus metrics.
//!
//! Data flows one way: [`config`] (YAML → validated specs) → [`programs`]
//! (open, load, attach) → [`reader`] (periodic map reads) → [`metrics`]
//! (immutable snapshots, exposition) → [`server`] (HTTP).

pub mod cli;
pub mod config;
pub mod decoders;
pub mod exporter;
pub mod fleet;
pub mod metrics;
pub mod programs;
pub mod reader;
pub mod reload;
pub mod server;
pub mod settings;
