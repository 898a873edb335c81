//! sdp (being built).
