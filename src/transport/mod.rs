//! transport (being built).
