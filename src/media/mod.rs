//! Media forwarding core: port pool, leg table, forwarding workers, per-leg stats,
//! inactivity detection. Knows nothing of SIP.

pub mod ice;
pub mod srtp;

pub mod cipher;
pub mod forward;
mod ice_glue;
pub mod inactivity;
pub mod leg;
pub mod metrics;
pub mod rtp;
pub mod settings;
pub mod stats;
pub mod sys;
