//! Media forwarding core: port pool, leg table, forwarding workers, per-leg stats,
//! inactivity detection. Knows nothing of SIP.

pub mod ice;
pub mod srtp;
