//! bpf-exporter: turns eBPF maps into Prometheus metrics.
//!
//! Data flows one way: [`settings`] (flags, resolved once) → [`config`]
//! (YAML → validated specs) → [`programs`] (open, load, attach) →
//! [`fleet`] (the one owner of what runs) → [`reader`] (periodic map reads)
//! → [`metrics`] (immutable snapshots, exposition) → [`server`] (HTTP).
//! [`reload`] changes the fleet: a pure plan, applied off the reader thread
//! and handed to the reader in one swap.

pub mod cli;
pub mod config;
pub mod decoders;
pub mod exporter;
pub mod fleet;
pub mod logging;
pub mod metrics;
pub mod privileges;
pub mod programs;
pub mod reader;
pub mod reload;
pub mod server;
pub mod settings;
