//! transaction (being built).
