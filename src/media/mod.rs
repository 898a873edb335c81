//! media (being built).
