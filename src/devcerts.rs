//! Development certificates (being built).
