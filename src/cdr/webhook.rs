//! The HTTP webhook sink: records POSTed as a JSON array (`Content-Type: application/json`)
//! to an `http://` URL (no TLS: put a local relay in front for HTTPS), in batches of at most
//! `batch_records`, sent once the batch is full or its first record has waited
//! `batch_delay`. A POST that fails (connect error, timeout, status not 2xx) is repeated after
//! a backoff doubling from `retry_initial` up to `retry_max`, at most `max_attempts` times in
//! all; meanwhile new records wait in a buffer of `buffer_records`, beyond which the oldest
//! are dropped. Every loss is counted (`cdr_records_dropped_total{sink="webhook"}`).
//! Runs as a tokio task; the SIP core only queues (never waits).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::metrics::CdrMetrics;
use super::record::CallDetailRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `http://host[:port]/path`.
    pub url: String,
    pub batch_records: usize,
    pub batch_delay: Duration,
    /// Records held while POSTs fail; the oldest give way beyond it.
    pub buffer_records: usize,
    pub max_attempts: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Connect plus answer of one POST.
    pub timeout: Duration,
    /// Records waiting for the task; beyond it records are dropped (counted).
    pub queue_records: usize,
}

/// Why a URL is not one the webhook can POST to.
pub fn check_url(url: &str) -> Result<(), String> {
    parse_url(url).map(|_| ())
}

struct Target {
    host: String,
    port: u16,
    uri: Uri,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "scheme {other:?} is not supported: only http:// (put a local relay in front \
                 for HTTPS)"
            ))
        }
        None => return Err("needs http://host[:port]/path".into()),
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or("has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    Ok(Target { host, port, uri })
}

pub(super) enum WebhookMessage {
    Record(Arc<CallDetailRecord>),
    /// Try once to deliver everything queued before it, then answer.
    Flush(oneshot::Sender<()>),
}

/// The SIP core's end of the webhook sink.
pub(super) struct WebhookSink {
    queue: mpsc::Sender<WebhookMessage>,
}

impl WebhookSink {
    /// Start the delivery task on the current tokio runtime.
    pub(super) fn start(
        settings: WebhookSettings,
        metrics: CdrMetrics,
    ) -> Result<WebhookSink, String> {
        let target = parse_url(&settings.url)?;
        let (queue, receiver) = mpsc::channel(settings.queue_records.max(1));
        let task = Delivery {
            settings,
            target,
            metrics,
            receiver,
            buffer: VecDeque::new(),
            flush: Vec::new(),
            closed: false,
        };
        tokio::spawn(task.run());
        Ok(WebhookSink { queue })
    }

    pub(super) fn submit(&self, record: Arc<CallDetailRecord>) -> bool {
        self.queue.try_send(WebhookMessage::Record(record)).is_ok()
    }

    /// Wait (at most `limit`) for one delivery attempt of everything queued so far.
    pub(super) async fn flush(&self, limit: Duration) -> bool {
        let (ack, done) = oneshot::channel();
        let asked = tokio::time::timeout(limit, self.queue.send(WebhookMessage::Flush(ack)));
        if !matches!(asked.await, Ok(Ok(()))) {
            return false;
        }
        matches!(tokio::time::timeout(limit, done).await, Ok(Ok(())))
    }
}

struct Delivery {
    settings: WebhookSettings,
    target: Target,
    metrics: CdrMetrics,
    receiver: mpsc::Receiver<WebhookMessage>,
    buffer: VecDeque<Arc<CallDetailRecord>>,
    /// Flushes asked for: answered once the buffer has had its delivery attempt.
    flush: Vec<oneshot::Sender<()>>,
    closed: bool,
}

impl Delivery {
    async fn run(mut self) {
        while !self.closed || !self.buffer.is_empty() {
            self.fill().await;
            if self.buffer.is_empty() {
                self.answer_flushes();
                continue;
            }
            let take = self.buffer.len().min(self.settings.batch_records.max(1));
            let batch: Vec<_> = self.buffer.drain(..take).collect();
            self.deliver(batch).await;
            if self.buffer.is_empty() {
                self.answer_flushes();
            }
        }
    }

    fn answer_flushes(&mut self) {
        for ack in self.flush.drain(..) {
            let _ = ack.send(());
        }
    }

    fn take(&mut self, message: Option<WebhookMessage>) {
        match message {
            None => self.closed = true,
            Some(WebhookMessage::Flush(ack)) => self.flush.push(ack),
            Some(WebhookMessage::Record(record)) => {
                if self.buffer.len() >= self.settings.buffer_records.max(1) {
                    self.buffer.pop_front();
                    self.metrics.dropped("webhook", "buffer_full", 1);
                }
                self.buffer.push_back(record);
            }
        }
    }

    /// Wait until a batch is full, the first record has waited `batch_delay`, a flush is
    /// asked for, or the queue is closed.
    async fn fill(&mut self) {
        let mut deadline: Option<Instant> =
            (!self.buffer.is_empty()).then(|| Instant::now() + self.settings.batch_delay);
        while !self.closed
            && self.flush.is_empty()
            && self.buffer.len() < self.settings.batch_records.max(1)
        {
            let message = match deadline {
                None => self.receiver.recv().await,
                Some(at) => match tokio::time::timeout_at(at, self.receiver.recv()).await {
                    Ok(message) => message,
                    Err(_) => return,
                },
            };
            self.take(message);
            if deadline.is_none() && !self.buffer.is_empty() {
                deadline = Some(Instant::now() + self.settings.batch_delay);
            }
        }
    }

    async fn deliver(&mut self, batch: Vec<Arc<CallDetailRecord>>) {
        let count = batch.len() as u64;
        let records: Vec<&CallDetailRecord> = batch.iter().map(|r| &**r).collect();
        let body = match serde_json::to_vec(&records) {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                tracing::warn!(%error, "call detail records did not serialize");
                self.metrics.dropped("webhook", "write_failed", count);
                return;
            }
        };
        let mut backoff = self.settings.retry_initial;
        let mut attempt = 1;
        loop {
            match post(&self.target, body.clone(), self.settings.timeout).await {
                Ok(()) => {
                    self.metrics.written("webhook", count);
                    return;
                }
                Err(error) => {
                    self.metrics.webhook_failures.inc();
                    // A flush or a closing queue gets one attempt: shutdown is not held up.
                    let last = attempt >= self.settings.max_attempts.max(1)
                        || !self.flush.is_empty()
                        || self.closed;
                    tracing::warn!(%error, url = %self.settings.url, attempt, records = count,
                        gave_up = last, "CDR webhook POST failed");
                    if last {
                        self.metrics.dropped("webhook", "gave_up", count);
                        return;
                    }
                }
            }
            // Keep taking records while waiting, so the SIP core's queue does not fill.
            let until = Instant::now() + backoff;
            while !self.closed && self.flush.is_empty() {
                match tokio::time::timeout_at(until, self.receiver.recv()).await {
                    Ok(message) => self.take(message),
                    Err(_) => break,
                }
            }
            backoff = (backoff * 2).min(self.settings.retry_max);
            attempt += 1;
            self.metrics.webhook_retries.inc();
        }
    }
}

/// One POST on a fresh connection; Ok on a 2xx.
async fn post(target: &Target, body: Bytes, limit: Duration) -> Result<(), String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(connection);
        let authority = match target.uri.port_u16() {
            Some(port) => format!("{}:{port}", target.host),
            None => target.host.clone(),
        };
        let path = target
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "teams-sbc-cdr")
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("POST: {e}"))?;
        let status = response.status();
        // Read the answer to its end so the connection closes cleanly.
        let _ = response.into_body().collect().await;
        driver.abort();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host_are_taken() {
        assert!(check_url("http://127.0.0.1:8080/cdr").is_ok());
        assert!(check_url("http://cdr.example.net/ingest?k=1").is_ok());
        assert!(check_url("http://[::1]:9/x").is_ok());
        let https = check_url("https://cdr.example.net/").unwrap_err();
        assert!(https.contains("only http://"), "{https}");
        assert!(check_url("cdr.example.net/x").is_err());
        assert!(check_url("http:///x").is_err());
        let target = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("::1", 9));
    }

    fn settings(buffer_records: usize) -> WebhookSettings {
        WebhookSettings {
            url: "http://127.0.0.1:9/cdr".into(),
            batch_records: 2,
            batch_delay: Duration::from_millis(10),
            buffer_records,
            max_attempts: 2,
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(20),
            timeout: Duration::from_millis(500),
            queue_records: 8,
        }
    }

    #[test]
    fn a_full_retry_buffer_gives_up_its_oldest_records_counted() {
        let registry = prometheus::Registry::new();
        let metrics = CdrMetrics::register(&registry).unwrap();
        let (_queue, receiver) = mpsc::channel(1);
        let mut delivery = Delivery {
            settings: settings(2),
            target: parse_url("http://127.0.0.1:9/cdr").unwrap(),
            metrics: metrics.clone(),
            receiver,
            buffer: VecDeque::new(),
            flush: Vec::new(),
            closed: false,
        };
        let records: Vec<_> = (0..3)
            .map(|n| {
                let mut r = super::super::record::tests::sample_record();
                r.call = n;
                Arc::new(r)
            })
            .collect();
        for r in &records {
            delivery.take(Some(WebhookMessage::Record(r.clone())));
        }
        let kept: Vec<u64> = delivery.buffer.iter().map(|r| r.call).collect();
        assert_eq!(kept, [1, 2]);
        let dropped = metrics
            .dropped
            .with_label_values(&["webhook", "buffer_full"]);
        assert_eq!(dropped.get(), 1);
    }

    /// Nothing listens: each batch is tried `max_attempts` times, then counted as given up.
    #[tokio::test]
    async fn an_unreachable_server_costs_max_attempts_then_the_batch_is_counted() {
        let registry = prometheus::Registry::new();
        let metrics = CdrMetrics::register(&registry).unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/cdr", closed.local_addr().unwrap());
        drop(closed);
        let sink = WebhookSink::start(
            WebhookSettings {
                url,
                ..settings(10)
            },
            metrics.clone(),
        )
        .unwrap();
        assert!(sink.submit(Arc::new(super::super::record::tests::sample_record())));
        let gave_up = metrics.dropped.with_label_values(&["webhook", "gave_up"]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while gave_up.get() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(gave_up.get(), 1);
        assert_eq!(metrics.webhook_failures.get(), 2);
        assert_eq!(metrics.webhook_retries.get(), 1);
    }
}
