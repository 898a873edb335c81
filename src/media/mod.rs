//! Media forwarding core: port pool, leg table, forwarding workers, SRTP/SRTCP, ICE-lite
//! answering, per-leg statistics and inactivity detection. Knows nothing of SIP: the call
//! layer drives it through [`MediaHandle`] and listens to [`MediaEvent`]s.
//!
//! Shape (docs/architecture.md, principle 3):
//! * [`MediaEngine::start`] spawns `workers` std threads. Each worker owns an epoll set, the
//!   sockets of the sessions assigned to it (least-loaded live worker at creation, see
//!   `faults`) and a flat slot table; an epoll token is `slot << 2 | socket`, so a packet
//!   finds its leg with two array indexes, no map and no lock.
//! * Per ready socket the worker receives up to 32 datagrams with `recvmmsg` into
//!   preallocated 2 KiB buffers, runs [`forward_step`] on each in place (SRTP unprotect,
//!   latching, loss/jitter, payload type rewrite, SRTP protect) and sends the results with
//!   `sendmmsg`, one call per run of packets leaving the same socket. `batch_io: false`
//!   falls back to `recvfrom`/`sendto`. Nothing on that path allocates or locks; counters
//!   are atomics (per leg) and plain integers flushed into Prometheus once per batch.
//! * Control calls bind sockets synchronously (so addresses come back at once), build SRTP
//!   contexts off the packet path, and queue a command to the owning worker's channel plus
//!   an eventfd wake-up. The worker applies commands between batches, before reading
//!   sockets, so a command issued before a packet was sent applies to that packet.
//! * Some packets are the SBC's own (rows 38, 46, 49; `playout`, `rtcp`): ringback and
//!   comfort-noise frames every 20 ms while a leg has one playing (the loop sleeps only until
//!   the next is due; the legs that play are kept in a list, so idle sessions cost nothing),
//!   and RTCP reports on the ≤ 250 ms tick. They go out through the same batch buffers and
//!   continue the stream the leg receives (`stats::SentStream`).
//! * Each session holds 3 sockets: carrier RTP + RTCP (even/odd pair) and one rtcp-mux Teams
//!   port. 5,000 sessions = 15,000 fds (+2 per worker), inside a 20,000 open-file limit.

pub mod ice;
pub mod srtp;

pub mod cipher;
pub mod dtmf_convert;
pub mod forward;
mod ice_glue;
pub mod inactivity;
pub mod inband_dtmf;
pub mod leg;
pub mod metrics;
pub mod playout;
pub mod rtcp;
pub mod rtp;
pub mod settings;
pub mod stats;
#[allow(unsafe_code)] // the one module that talks to the kernel directly (see lib.rs)
pub mod sys;

mod engine;
mod faults;
mod ports;
mod worker;

pub use cipher::SrtpKeys;
pub use dtmf_convert::InbandDtmfPlan;
pub use engine::{
    LegAddresses, LegMediaAddresses, MapDirection, MediaEngine, MediaError, MediaEvent,
    MediaHandle, SessionAllocation, SessionId, SessionStats, SOCKETS_PER_SESSION,
};
pub use faults::{MediaEvents, EVENT_QUEUE};
pub use forward::{forward_step, Action, Ingress, PacketTime};
pub use leg::{LegPair, LegSide, LegState, SocketRole};
pub use metrics::{DropReason, MediaMetrics};
pub use playout::{ComfortNoisePlan, G711Target, Ringback, TonePlan};
pub use rtp::PayloadMapping;
pub use settings::{InterfaceSettings, LatchingMode, MediaSettings};
pub use stats::LegStats;
