//! Configs.

/// A config shipped inside the binary, from `configs/<name>.yaml`.
#[derive(Debug)]
pub struct EmbeddedConfig {
    pub name: &'static str,
    pub path: &'static str,
    pub text: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/configs.rs"));
