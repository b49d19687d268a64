//! HTTP: `/metrics`, `/`, `/-/healthy`, `/-/ready`.
