//! ops (being built).
