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
mod engine;
mod ports;
mod worker;

pub use cipher::SrtpKeys;
pub use engine::{
    LegAddresses, MapDirection, MediaEngine, MediaError, MediaEvent, MediaHandle,
    SessionAllocation, SessionId, SessionStats, SOCKETS_PER_SESSION,
};
pub use forward::{forward_step, Action, Ingress, PacketTime};
pub use leg::{LegPair, LegSide, LegState, SocketRole};
pub use metrics::{DropReason, MediaMetrics};
pub use rtp::PayloadMapping;
pub use settings::{InterfaceSettings, LatchingMode, MediaSettings};
pub use stats::LegStats;
