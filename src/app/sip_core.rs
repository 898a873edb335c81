//! The SIP core: one task owning the transaction layer.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use prometheus::Registry;
use tokio::sync::{mpsc, oneshot};

use super::answers::{final_response, with_allow, IdentityTemplate};
use super::requests::RequestSender;
use super::responses::AnswerQueue;
pub(super) use crate::dispatch::Route;
use crate::dispatch::{DispatchEvents, Dispatcher};
use crate::health::{self, PingOutcome};
use crate::ops::admin::CoreRequest;
use crate::ops::liveness::{Heartbeat, BEAT_EVERY};
use crate::sip::{Message, Method};
use crate::transaction::{Output, Payer, TransactionLayer, TuEvent, TxId};
use crate::transport::{Destination, Inbound, Source};

pub(super) enum Command {
    SendOptions {
        dest: Destination,
        request: Box<Message>,
        reply: oneshot::Sender<PingOutcome>,
    },
    SendFailed(TxId),
    /// Graceful drain: refuse new calls and Microsoft's OPTIONS with 503 from now on, end
    /// the calls still up at `deadline` (BYE with a Reason), then tell `drained`.
    Drain {
        deadline: Instant,
        drained: oneshot::Sender<()>,
    },
    /// The carrier trunks calls in progress belong to.
    TrunksInUse {
        reply: oneshot::Sender<Vec<crate::transport::TrunkName>>,
    },
    /// A reloaded configuration for new calls and transactions; `applied` once in force.
    Reload {
        update: Box<CoreUpdate>,
        applied: oneshot::Sender<()>,
    },
    /// A question or order of the admin API.
    Admin(CoreRequest),
}

/// What the SIP core takes from a reloaded configuration.
pub(super) struct CoreUpdate {
    pub(super) routing: std::sync::Arc<crate::routing::RoutingTable>,
    pub(super) config: crate::config::Config,
    pub(super) transaction: crate::transaction::TransactionSettings,
    pub(super) own_headers: crate::transaction::OwnResponseHeaders<Route>,
    pub(super) identity: IdentityTemplate,
}

/// A drain in progress.
pub(super) struct Draining {
    deadline: Instant,
    /// The calls still up at the deadline were told to end.
    terminated: bool,
    drained: Option<oneshot::Sender<()>>,
}

#[derive(Clone)]
pub(super) struct AppMetrics {
    /// `sip_requests_rejected_total{reason}`.
    pub(super) rejected_requests: prometheus::IntCounterVec,
}

impl AppMetrics {
    pub(super) fn register(registry: &Registry) -> prometheus::Result<AppMetrics> {
        let rejected_requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "sip_requests_rejected_total",
                "Requests dropped before the transaction layer, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(rejected_requests.clone()))?;
        Ok(AppMetrics { rejected_requests })
    }
}

pub(super) struct SipCore {
    pub(super) layer: TransactionLayer<Route>,
    pub(super) identity: IdentityTemplate,
    pub(super) pending_pings: HashMap<TxId, oneshot::Sender<PingOutcome>>,
    pub(super) responses: AnswerQueue,
    pub(super) requests: RequestSender,
    /// Beaten once per loop turn (`/healthz`); the periodic tick keeps an idle core beating.
    pub(super) heartbeat: Heartbeat,
    /// The B2BUA calls: INVITE, ACK, CANCEL, in-dialog requests and their transactions.
    pub(super) calls: Dispatcher,
    pub(super) metrics: AppMetrics,
    pub(super) draining: Option<Draining>,
}

impl SipCore {
    pub(super) async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
        mut call_events: DispatchEvents,
    ) {
        // Stops the heartbeat when this future ends or is dropped, e.g. unwound by a panic.
        let _alive = self.heartbeat.stop_on_drop();
        let mut pulse = tokio::time::interval(BEAT_EVERY);
        pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            self.heartbeat.beat();
            let drain_deadline = self
                .draining
                .as_ref()
                .filter(|d| !d.terminated)
                .map(|d| d.deadline);
            let deadline = [
                self.layer.poll_timeout(),
                self.calls.poll_timeout(),
                drain_deadline,
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = inbound.recv() => match received {
                    Some(Inbound { message, source }) => self.on_inbound(message, source),
                    None => return,
                },
                Some(command) = commands.recv() => self.on_command(command),
                Some(event) = call_events.recv() => {
                    self.calls.on_event(Instant::now(), &mut self.layer, event);
                }
                _ = sleep => {
                    let now = Instant::now();
                    self.layer.handle_timeout(now);
                    self.calls.handle_timeout(now, &mut self.layer);
                }
                _ = pulse.tick() => {}
            }
            self.drain();
            self.drain_progress(Instant::now());
        }
    }

    /// A drain ends the calls still up at its deadline, and reports once none is left.
    fn drain_progress(&mut self, now: Instant) {
        let Some(draining) = self.draining.as_mut() else {
            return;
        };
        if !draining.terminated && now >= draining.deadline {
            draining.terminated = true;
            let left = self.calls.call_count();
            tracing::warn!(calls = left, "drain timeout: ending the calls still up");
            self.calls
                .terminate_all(now, &mut self.layer, crate::call::EndReason::Drained);
            self.drain();
        }
        if self.calls.call_count() == 0 {
            if let Some(drained) = self.draining.as_mut().and_then(|d| d.drained.take()) {
                let _ = drained.send(());
            }
        }
    }

    /// A message from an identified peer (the transport dropped strangers before parsing).
    pub(super) fn on_inbound(&mut self, message: Message, source: Source) {
        let Some(peer) = source.peer.clone() else {
            // Only a transport run without peer rules delivers these; nobody to talk to.
            self.metrics
                .rejected_requests
                .with_label_values(&["unidentified_peer"])
                .inc();
            return;
        };
        let out_of_dialog = message
            .to()
            .ok()
            .is_some_and(|to| to.param("tag").is_none());
        if message.method() == Some(&Method::Options) && out_of_dialog {
            // Health checks keep no transaction: a retransmission just gets another 200, and
            // an OPTIONS flood costs one answer each, never table space. While draining the
            // answer is 503, so Microsoft's proxies mark this SBC down and use another.
            let identity = self.identity.for_request(&message, &source);
            let response = match self.draining {
                None => health::options_response(&message, &identity),
                Some(_) => super::answers::response_builder(
                    &message,
                    503,
                    "Service Unavailable (draining)",
                    &identity,
                )
                .header(&crate::sip::HeaderName::RetryAfter, b"60")
                .build(),
            };
            self.responses.push((None, source, response));
            return;
        }
        let payers = [Payer::Source(source.remote.ip()), Payer::Peer(peer)];
        self.layer
            .on_incoming_paid(Instant::now(), message, Route::Back(source), payers);
    }

    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::SendOptions {
                dest,
                request,
                reply,
            } => match self
                .layer
                .send_request(Instant::now(), *request, Route::To(dest))
            {
                Ok(id) => {
                    self.pending_pings.insert(id, reply);
                }
                Err(error) => {
                    tracing::warn!(%error, "OPTIONS ping refused by the transaction layer");
                    let _ = reply.send(PingOutcome::TransportFailure);
                }
            },
            Command::SendFailed(id) => self.layer.on_transport_error(Instant::now(), id),
            Command::TrunksInUse { reply } => {
                let _ = reply.send(self.calls.trunks_in_use());
            }
            Command::Reload { update, applied } => {
                let update = *update;
                self.calls.reload(update.routing, &update.config);
                self.layer
                    .reconfigure(update.transaction, update.own_headers);
                self.identity = update.identity;
                let _ = applied.send(());
            }
            Command::Admin(CoreRequest::Calls(reply)) => {
                let _ = reply.send(self.calls.snapshot());
            }
            Command::Admin(CoreRequest::Hangup { call, reply }) => {
                let ended = self.calls.terminate(
                    Instant::now(),
                    &mut self.layer,
                    call,
                    crate::call::EndReason::Operator,
                );
                let _ = reply.send(ended);
            }
            Command::Drain { deadline, drained } => {
                tracing::info!("draining: new calls and OPTIONS get 503; calls in progress go on");
                self.calls.set_draining(true);
                self.draining = Some(Draining {
                    deadline,
                    terminated: false,
                    drained: Some(drained),
                });
            }
        }
    }

    pub(super) fn drain(&mut self) {
        while let Some(output) = self.layer.poll_output() {
            match output {
                Output::Transmit { tx, dest, bytes } => self.transmit(tx, dest, bytes),
                Output::Deliver(event) => self.deliver(event),
            }
        }
    }

    pub(super) fn transmit(&mut self, id: Option<TxId>, route: Route, bytes: Bytes) {
        match route {
            Route::Back(source) => self.responses.push((id, source, bytes)),
            Route::To(dest) => self.requests.push(dest, id, bytes),
        }
    }

    pub(super) fn deliver(&mut self, event: TuEvent<Route>) {
        let Some(event) = self
            .calls
            .on_tu_event(Instant::now(), &mut self.layer, event)
        else {
            return;
        };
        match event {
            TuEvent::Request {
                tx,
                msg,
                source,
                cancels,
            } => {
                let Route::Back(source) = source else { return };
                self.answer(tx, &msg, &source, cancels);
            }
            TuEvent::Response { tx, msg, .. } => {
                if let Some(status) = msg.status().filter(|s| *s >= 200) {
                    self.finish_ping(tx, PingOutcome::Response(status));
                }
            }
            TuEvent::Timeout { tx, .. } => self.finish_ping(tx, PingOutcome::Timeout),
            TuEvent::TransportError { tx } | TuEvent::Terminated { tx } => {
                self.finish_ping(tx, PingOutcome::TransportFailure)
            }
            TuEvent::Ack { .. } | TuEvent::AckTimeout { .. } => {}
        }
    }

    pub(super) fn finish_ping(&mut self, tx: TxId, outcome: PingOutcome) {
        if let Some(reply) = self.pending_pings.remove(&tx) {
            let _ = reply.send(outcome);
        }
    }

    pub(super) fn answer(
        &mut self,
        tx: TxId,
        request: &Message,
        source: &Source,
        cancels: Option<TxId>,
    ) {
        let identity = self.identity.for_request(request, source);
        let in_dialog = request
            .to()
            .ok()
            .is_some_and(|to| to.param("tag").is_some());
        let response = match request.method() {
            Some(Method::Options) => health::options_response(request, &identity),
            Some(Method::Cancel) => match cancels {
                Some(invite) => {
                    if let Some(invite_request) = self.layer.request(invite).cloned() {
                        let terminated =
                            final_response(&invite_request, 487, "Request Terminated", &identity);
                        let _ = self.layer.send_response(Instant::now(), invite, terminated);
                    }
                    final_response(request, 200, "OK", &identity)
                }
                None => final_response(request, 481, "Call/Transaction Does Not Exist", &identity),
            },
            _ if in_dialog => {
                final_response(request, 481, "Call/Transaction Does Not Exist", &identity)
            }
            Some(Method::Invite) => final_response(
                request,
                503,
                "Service Unavailable (call handling not enabled)",
                &identity,
            ),
            Some(Method::Other(_)) | None => with_allow(request, 501, "Not Implemented", &identity),
            Some(_) => with_allow(request, 405, "Method Not Allowed", &identity),
        };
        if let Err(error) = self.layer.send_response(Instant::now(), tx, response) {
            tracing::debug!(%error, "response not accepted by the transaction layer");
        }
    }
}
