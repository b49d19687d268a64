//! Map reads.
