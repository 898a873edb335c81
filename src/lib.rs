//! teams-sbc: a multi-tenant session border controller for Microsoft Teams Direct Routing.
//!
//! Module map (arrows point down only): `sip`, `sdp` and `media` know nothing of the rest;
//! `transport` and `transaction` build on `sip`; `health` on `transaction` and `transport`;
//! `config` is plain data validated at load; `cdr` (call detail records and their sinks) reads
//! `call`, `sip`, `sdp` and `media` types and is fed by `dispatch`; `ops` serves metrics; `app`
//! wires it all together.
//!
//! Unsafe code lives only in `media::sys` (epoll, eventfd, recvmmsg/sendmmsg), where every
//! unsafe block carries a `// SAFETY:` comment saying why it is sound; it is denied
//! everywhere else (`forbid` could not be lifted for that one module).
#![deny(unsafe_code)]

pub mod app;
pub mod call;
pub mod cdr;
pub mod config;
pub mod ctl;
pub mod devcerts;
pub mod dispatch;
pub mod health;
pub mod media;
pub mod ops;
pub mod routing;
pub mod sdp;
pub mod sip;
pub mod transaction;
pub mod transport;
