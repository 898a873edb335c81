//! Ordered lanes: a bounded FIFO queue per key (a destination, a request connection), each
//! drained by a task of its own while it has work.
//!
//! Messages for one key leave in the order they were queued, one at a time, so a slow key (a
//! connect to a peer that does not answer) holds up only its own messages. A lane's task
//! ends as soon as its queue is empty; the next message for the key opens a new lane, whose
//! task first waits for the old one to finish its last sends, so order holds across lanes
//! too. Lanes are bounded in number (each task holds one of `max_lanes` slots) and in depth;
//! what does not fit is handed back to the caller to drop, count and report.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::sip_core::Command;
use crate::ops::RateLimitedLog;
use crate::transaction::TxId;

pub(super) struct Lanes<K, T> {
    open: HashMap<K, Lane<T>>,
    slots: Arc<Semaphore>,
    depth: usize,
}

struct Lane<T> {
    queue: mpsc::Sender<T>,
    task: JoinHandle<()>,
}

/// What [`Lanes::push`] did with an item.
pub(super) enum Push<T> {
    Queued,
    /// The key's lane is full.
    Full(T),
    /// No lane is taking items for the key: open one, or send at once.
    NoLane(T),
    /// The key's last lane takes no more items but is still sending its final ones: open a
    /// new lane (it waits for the old one); sending at once could overtake them.
    Finishing(T),
}

/// A lane task's view of its queue.
pub(super) struct LaneQueue<T> {
    items: mpsc::Receiver<T>,
}

impl<T> LaneQueue<T> {
    /// The next queued item; `None` once the queue is empty, after which the lane takes no
    /// more (the next item for its key opens a new lane) and its task should end.
    pub(super) fn next(&mut self) -> Option<T> {
        if let Ok(item) = self.items.try_recv() {
            return Some(item);
        }
        // Refuse further items, then take what slipped in before the close.
        self.items.close();
        self.items.try_recv().ok()
    }

    /// The next item already queued, leaving the lane open.
    pub(super) fn queued(&mut self) -> Option<T> {
        self.items.try_recv().ok()
    }
}

impl<K: Hash + Eq, T: Send + 'static> Lanes<K, T> {
    pub(super) fn new(max_lanes: usize, depth: usize) -> Lanes<K, T> {
        Lanes {
            open: HashMap::new(),
            slots: Arc::new(Semaphore::new(max_lanes)),
            depth,
        }
    }

    /// Queue `item` behind the key's earlier items, if a lane is taking them.
    pub(super) fn push(&mut self, key: &K, item: T) -> Push<T> {
        let Some(lane) = self.open.get(key) else {
            return Push::NoLane(item);
        };
        match lane.queue.try_send(item) {
            Ok(()) => Push::Queued,
            Err(TrySendError::Full(item)) => Push::Full(item),
            Err(TrySendError::Closed(item)) if lane.task.is_finished() => Push::NoLane(item),
            Err(TrySendError::Closed(item)) => Push::Finishing(item),
        }
    }

    /// Open a lane for `key` whose task runs `work` on its queue (with the item that opened
    /// it captured in `work`). `false` when every slot is taken: nothing was started.
    pub(super) fn open<W, F>(&mut self, key: K, work: W) -> bool
    where
        W: FnOnce(LaneQueue<T>) -> F + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return false;
        };
        // Lanes whose task has ended are forgotten; one still sending its last items stays
        // until its key opens a new lane, which then waits for it.
        self.open.retain(|_, lane| !lane.task.is_finished());
        let previous = self.open.remove(&key).map(|lane| lane.task);
        let (queue, items) = mpsc::channel(self.depth);
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            work(LaneQueue { items }).await;
            drop(slot);
        });
        self.open.insert(key, Lane { queue, task });
        true
    }

    /// Lanes with a running task.
    #[cfg(test)]
    pub(super) fn running(&self) -> usize {
        self.open
            .values()
            .filter(|lane| !lane.task.is_finished())
            .count()
    }
}

static DROPPED_LOG: RateLimitedLog<(&str, &str)> = RateLimitedLog::new(Duration::from_secs(60));

/// `sip_{responses,requests}_dropped_total{reason}` plus the failure path back to the SIP
/// core, for messages that a lane did not take or could not send.
#[derive(Clone)]
pub(super) struct SendFailures {
    /// "response" or "request", for the log.
    what: &'static str,
    pub(super) dropped: prometheus::IntCounterVec,
    commands: mpsc::Sender<Command>,
}

impl SendFailures {
    pub(super) fn register(
        registry: &prometheus::Registry,
        what: &'static str,
        metric: &str,
        help: &str,
        commands: mpsc::Sender<Command>,
    ) -> prometheus::Result<SendFailures> {
        let dropped =
            prometheus::IntCounterVec::new(prometheus::Opts::new(metric, help), &["reason"])?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(SendFailures {
            what,
            dropped,
            commands,
        })
    }

    /// Count and (rate-limited) log a message dropped unsent, and let its transaction know.
    pub(super) fn drop_message(&self, reason: &'static str, id: Option<TxId>, remote: SocketAddr) {
        self.dropped.with_label_values(&[reason]).inc();
        if let Some(suppressed) = DROPPED_LOG.check(&(self.what, reason), Instant::now()) {
            tracing::warn!(what = self.what, reason, %remote, suppressed, "SIP message dropped");
        }
        self.report_failure(id);
    }

    /// Tell the transaction its message did not leave (never blocks the caller: with the
    /// command queue full the transaction's own timer ends it instead).
    pub(super) fn report_failure(&self, id: Option<TxId>) {
        if let Some(id) = id {
            let _ = self.commands.try_send(Command::SendFailed(id));
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// A port whose accept queue is full: SYNs to it go unanswered, connects hang.
    pub(in crate::app) fn blackhole() -> (socket2::Socket, Vec<socket2::Socket>, SocketAddr) {
        use socket2::{Domain, Socket, Type};
        let trap = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        trap.bind(&SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        trap.listen(0).unwrap();
        let addr = trap.local_addr().unwrap().as_socket().unwrap();
        let fill = (0..4)
            .map(|_| {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                s.set_nonblocking(true).unwrap();
                let _ = s.connect(&addr.into());
                s
            })
            .collect();
        (trap, fill, addr)
    }

    /// A lane task that records what it takes and waits for `gate` before its first item.
    fn recorder(
        log: mpsc::UnboundedSender<(u32, u32)>,
        lane: u32,
        first: u32,
        gate: Option<oneshot::Receiver<()>>,
    ) -> impl FnOnce(LaneQueue<u32>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        move |mut queue| {
            Box::pin(async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                let _ = log.send((lane, first));
                while let Some(item) = queue.next() {
                    tokio::task::yield_now().await;
                    let _ = log.send((lane, item));
                }
            })
        }
    }

    #[tokio::test]
    async fn items_of_one_key_keep_their_order_and_a_blocked_key_holds_up_no_other() {
        let mut lanes: Lanes<&str, u32> = Lanes::new(8, 16);
        let (log, mut seen) = mpsc::unbounded_channel();
        let (release_dead, dead_gate) = oneshot::channel();
        assert!(lanes.open("dead", recorder(log.clone(), 0, 100, Some(dead_gate))));
        for item in 101..110 {
            assert!(matches!(lanes.push(&"dead", item), Push::Queued));
        }
        assert!(matches!(lanes.push(&"live", 1), Push::NoLane(1)));
        assert!(lanes.open("live", recorder(log.clone(), 1, 1, None)));
        for item in 2..6 {
            match lanes.push(&"live", item) {
                Push::Queued => {}
                // The live lane already went idle: the next one waits for it.
                Push::NoLane(item) | Push::Finishing(item) => {
                    assert!(lanes.open("live", recorder(log.clone(), 1, item, None)))
                }
                Push::Full(_) => panic!("lane full"),
            }
        }
        // Everything for the live key arrives while the dead key is still blocked.
        let mut live = Vec::new();
        while live.len() < 5 {
            let (lane, item) = seen.recv().await.unwrap();
            assert_eq!(lane, 1, "the blocked lane sent {item}");
            live.push(item);
        }
        assert_eq!(live, vec![1, 2, 3, 4, 5]);
        release_dead.send(()).unwrap();
        let mut dead = Vec::new();
        while dead.len() < 10 {
            dead.push(seen.recv().await.unwrap().1);
        }
        assert_eq!(dead, (100..110).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn order_holds_across_a_lane_that_went_idle() {
        let mut lanes: Lanes<&str, u32> = Lanes::new(8, 256);
        let (log, mut seen) = mpsc::unbounded_channel();
        let mut opened = 0;
        for item in 0..200 {
            match lanes.push(&"k", item) {
                Push::Queued => {}
                Push::NoLane(item) | Push::Finishing(item) => {
                    assert!(lanes.open("k", recorder(log.clone(), 0, item, None)));
                    opened += 1;
                }
                Push::Full(_) => panic!("lane full"),
            }
            if item % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let mut got = Vec::new();
        while got.len() < 200 {
            got.push(seen.recv().await.unwrap().1);
        }
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        assert!(opened >= 1);
    }

    #[tokio::test]
    async fn a_full_lane_and_the_lane_limit_hand_items_back_and_idle_lanes_end() {
        let mut lanes: Lanes<u32, u32> = Lanes::new(2, 2);
        let (log, mut seen) = mpsc::unbounded_channel();
        let (release, gate) = oneshot::channel();
        assert!(lanes.open(1, recorder(log.clone(), 1, 0, Some(gate))));
        assert!(matches!(lanes.push(&1, 1), Push::Queued));
        assert!(matches!(lanes.push(&1, 2), Push::Queued));
        assert!(matches!(lanes.push(&1, 3), Push::Full(3)));
        assert!(lanes.open(2, recorder(log.clone(), 2, 0, None)));
        // Both slots are taken by lanes with work (or just finishing it).
        let (_never, gate) = oneshot::channel::<()>();
        assert!(!lanes.open(3, recorder(log.clone(), 3, 0, Some(gate))));
        release.send(()).unwrap();
        let mut count = 0;
        while count < 4 {
            seen.recv().await.unwrap();
            count += 1;
        }
        // With nothing left to send every lane task ends and gives its slot back.
        for _ in 0..1000 {
            if lanes.running() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(lanes.running(), 0);
        assert!(matches!(lanes.push(&1, 9), Push::NoLane(9)));
        assert!(lanes.open(3, recorder(log.clone(), 3, 0, None)));
        assert_eq!(seen.recv().await.unwrap(), (3, 0));
    }
}
