//! Snapshot → Prometheus text 0.0.4 or OpenMetrics 1.0.
