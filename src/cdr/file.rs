//! The JSON-lines file sink: one record per line, written by a thread of its own in batches
//! (the SIP core only queues), rotated by size and age, `keep_files` old files kept.
//!
//! Rotation renames `calls.jsonl` to `calls.jsonl.1` (`.1` to `.2`, ..., the oldest beyond
//! `keep_files` deleted) and opens a new `calls.jsonl`; a batch never straddles two files, and
//! an empty file is never rotated (an idle SBC does not make empty files every interval).
//!
//! The writer wakes every [`WRITE_EVERY`] and writes everything queued (in batches of at most
//! `batch_records`), so the SIP core's queueing never has to wake it.
//!
//! Durability (`fsync`): `batch` calls fsync after every batch written (a record queued
//! before a crash of the machine is on disk once its batch is written); `interval` (default)
//! at most once per `fsync_interval_ms` (a power loss may lose that long of records; a crash
//! of the process alone loses nothing written); `never` leaves it to the kernel. Each batch
//! is handed to the kernel (`write`) as soon as it is formed either way, so other readers
//! see it at once (and a crash of the process loses at most the last [`WRITE_EVERY`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metrics::CdrMetrics;
use super::record::CallDetailRecord;

/// How often the writer takes what is queued: a record reaches the file within about this
/// long of its call's end.
pub const WRITE_EVERY: Duration = Duration::from_millis(100);

/// `[cdr.file] fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    Batch,
    Interval(Duration),
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkSettings {
    pub path: PathBuf,
    /// Rotate before a batch would take the file past this size; 0: never by size.
    pub rotate_bytes: u64,
    /// Rotate a file this old at its next batch; `None`: never by age.
    pub rotate_after: Option<Duration>,
    /// Rotated files kept (`path.1` newest ... `path.N`).
    pub keep_files: usize,
    pub fsync: FsyncPolicy,
    /// Records written per batch at most.
    pub batch_records: usize,
    /// Records waiting for the writer; beyond it records are dropped (counted).
    pub queue_records: usize,
}

pub(super) enum FileMessage {
    Record(Arc<CallDetailRecord>),
    /// Write and fsync what is queued before it, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The SIP core's end of the file sink.
pub(super) struct FileSink {
    queue: SyncSender<FileMessage>,
}

impl FileSink {
    /// Open (create) the file and start the writer thread.
    pub(super) fn start(
        settings: FileSinkSettings,
        metrics: CdrMetrics,
    ) -> std::io::Result<FileSink> {
        let file = RotatingFile::open(&settings, Instant::now())?;
        let (queue, receiver) = std::sync::mpsc::sync_channel(settings.queue_records.max(1));
        std::thread::Builder::new()
            .name("cdr-file".into())
            .spawn(move || write_loop(file, receiver, &settings, &metrics))?;
        Ok(FileSink { queue })
    }

    /// A sink around `queue` without a writer (tests of a writer that does not keep up).
    #[cfg(test)]
    pub(super) fn with_queue(queue: SyncSender<FileMessage>) -> FileSink {
        FileSink { queue }
    }

    /// Never blocks: a full queue drops the record.
    pub(super) fn submit(&self, record: Arc<CallDetailRecord>) -> bool {
        match self.queue.try_send(FileMessage::Record(record)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Wait (at most `limit`) until everything queued so far is written and synced.
    pub(super) async fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (ack, done) = tokio::sync::oneshot::channel();
        let mut message = FileMessage::Flush(ack);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    message = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        matches!(tokio::time::timeout(left, done).await, Ok(Ok(())))
    }
}

fn write_loop(
    mut file: RotatingFile,
    receiver: Receiver<FileMessage>,
    settings: &FileSinkSettings,
    metrics: &CdrMetrics,
) {
    let mut lines: Vec<u8> = Vec::new();
    let mut acks: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    let mut open = true;
    while open {
        // Woken by the clock, never by the SIP core: queueing a record costs it no wake-up.
        std::thread::sleep(WRITE_EVERY);
        // Everything queued, in batches of at most `batch_records`.
        loop {
            let mut count = 0;
            while count < settings.batch_records && acks.is_empty() {
                match receiver.try_recv() {
                    Ok(FileMessage::Record(record)) => match serde_json::to_vec(&*record) {
                        Ok(line) => {
                            lines.extend_from_slice(&line);
                            lines.push(b'\n');
                            count += 1;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "a call detail record did not serialize");
                            metrics.dropped("file", "write_failed", 1);
                        }
                    },
                    Ok(FileMessage::Flush(ack)) => acks.push(ack),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let now = Instant::now();
            if count > 0 {
                write_batch(&mut file, &lines, count, settings, metrics, now);
                lines.clear();
            }
            let full = count >= settings.batch_records;
            if !acks.is_empty() || (count > 0 && settings.fsync == FsyncPolicy::Batch) {
                sync(&mut file);
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            if !full {
                break;
            }
        }
        let now = Instant::now();
        if let FsyncPolicy::Interval(every) = settings.fsync {
            if file.unsynced_for(now) >= Some(every) {
                sync(&mut file);
            }
        }
    }
    sync(&mut file);
}

fn write_batch(
    file: &mut RotatingFile,
    lines: &[u8],
    count: usize,
    settings: &FileSinkSettings,
    metrics: &CdrMetrics,
    now: Instant,
) {
    match file.write_batch(lines, settings, now) {
        Ok(rotated) => {
            metrics.written("file", count as u64);
            if rotated {
                metrics.file_rotations.inc();
            }
        }
        Err(error) => {
            tracing::warn!(%error, path = %settings.path.display(), records = count,
                "call detail records not written");
            metrics.dropped("file", "write_failed", count as u64);
        }
    }
}

fn sync(file: &mut RotatingFile) {
    if let Err(error) = file.sync() {
        tracing::warn!(%error, "fsync of the call detail records failed");
    }
}

/// The current file and when it was opened.
pub(super) struct RotatingFile {
    path: PathBuf,
    file: File,
    len: u64,
    opened: Instant,
    /// Written since the last fsync, since then.
    dirty_since: Option<Instant>,
}

impl RotatingFile {
    pub(super) fn open(settings: &FileSinkSettings, now: Instant) -> std::io::Result<RotatingFile> {
        if let Some(dir) = settings.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&settings.path)?;
        let len = file.metadata()?.len();
        Ok(RotatingFile {
            path: settings.path.clone(),
            file,
            len,
            opened: now,
            dirty_since: None,
        })
    }

    /// Write `lines` (whole records), rotating first when they would take the file past
    /// `rotate_bytes` or the file is older than `rotate_after`. True when it rotated.
    pub(super) fn write_batch(
        &mut self,
        lines: &[u8],
        settings: &FileSinkSettings,
        now: Instant,
    ) -> std::io::Result<bool> {
        let rotate = needs_rotation(
            self.len,
            lines.len() as u64,
            now.saturating_duration_since(self.opened),
            settings,
        );
        if rotate {
            self.rotate(settings, now)?;
        }
        self.file.write_all(lines)?;
        self.len += lines.len() as u64;
        self.dirty_since.get_or_insert(now);
        Ok(rotate)
    }

    fn rotate(&mut self, settings: &FileSinkSettings, now: Instant) -> std::io::Result<()> {
        self.file.sync_all()?;
        shift_old_files(&self.path, settings.keep_files)?;
        let fresh = RotatingFile::open(settings, now)?;
        *self = fresh;
        Ok(())
    }

    fn unsynced_for(&self, now: Instant) -> Option<Duration> {
        self.dirty_since
            .map(|since| now.saturating_duration_since(since))
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if self.dirty_since.take().is_some() {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// Whether a file of `len` bytes, `age` old, must be rotated before `adding` more bytes.
pub(super) fn needs_rotation(
    len: u64,
    adding: u64,
    age: Duration,
    settings: &FileSinkSettings,
) -> bool {
    if len == 0 {
        return false;
    }
    let by_size = settings.rotate_bytes > 0 && len + adding > settings.rotate_bytes;
    let by_age = settings.rotate_after.is_some_and(|limit| age >= limit);
    by_size || by_age
}

/// `path.N` for rotated file `n`.
pub(super) fn rotated_name(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Move `path` to `path.1`, `path.1` to `path.2`, ... keeping `keep` old files.
fn shift_old_files(path: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return remove_if_present(path);
    }
    remove_if_present(&rotated_name(path, keep))?;
    for n in (1..keep).rev() {
        let from = rotated_name(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated_name(path, n + 1))?;
        }
    }
    std::fs::rename(path, rotated_name(path, 1))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> FileSinkSettings {
        FileSinkSettings {
            path: dir.join("cdr").join("calls.jsonl"),
            rotate_bytes: 100,
            rotate_after: Some(Duration::from_secs(60)),
            keep_files: 2,
            fsync: FsyncPolicy::Batch,
            batch_records: 10,
            queue_records: 10,
        }
    }

    #[test]
    fn rotation_is_by_size_or_age_and_never_of_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let young = Duration::from_secs(1);
        assert!(!needs_rotation(0, 500, Duration::from_secs(3600), &s));
        assert!(!needs_rotation(60, 40, young, &s));
        assert!(needs_rotation(60, 41, young, &s));
        assert!(needs_rotation(1, 1, Duration::from_secs(60), &s));
        let unlimited = FileSinkSettings {
            rotate_bytes: 0,
            rotate_after: None,
            ..s
        };
        assert!(!needs_rotation(
            u64::MAX / 2,
            1 << 40,
            Duration::MAX,
            &unlimited
        ));
    }

    #[test]
    fn batches_rotate_into_numbered_files_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let now = Instant::now();
        let mut file = RotatingFile::open(&s, now).unwrap();
        let batch = |n: u8| format!("{{\"batch\":{n},\"pad\":\"{}\"}}\n", "x".repeat(25));
        for n in 1..=5u8 {
            let rotated = file.write_batch(batch(n).as_bytes(), &s, now).unwrap();
            // 46-byte batches: two fit in 100 bytes, the third starts a new file.
            assert_eq!(rotated, n == 3 || n == 5, "batch {n}");
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(s.path.clone()), batch(5));
        assert_eq!(read(rotated_name(&s.path, 1)), batch(3) + &batch(4));
        assert_eq!(read(rotated_name(&s.path, 2)), batch(1) + &batch(2));
        assert!(!rotated_name(&s.path, 3).exists(), "keep_files = 2");
        // Age rotates too, even below the size limit.
        let later = now + Duration::from_secs(61);
        assert!(file.write_batch(b"{}\n", &s, later).unwrap());
        assert_eq!(read(rotated_name(&s.path, 1)), batch(5));
        assert_eq!(read(rotated_name(&s.path, 2)), batch(3) + &batch(4));
    }

    #[tokio::test]
    async fn the_writer_thread_writes_queued_records_and_answers_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let registry = prometheus::Registry::new();
        let metrics = CdrMetrics::register(&registry).unwrap();
        let s = FileSinkSettings {
            rotate_bytes: 0,
            ..settings(dir.path())
        };
        let sink = FileSink::start(s.clone(), metrics.clone()).unwrap();
        let record = Arc::new(super::super::record::tests::sample_record());
        assert!(sink.submit(record.clone()));
        assert!(sink.submit(record));
        assert!(sink.flush(Duration::from_secs(10)).await);
        let text = std::fs::read_to_string(&s.path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let parsed: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(parsed["version"], 1);
        assert_eq!(metrics.records.with_label_values(&["file"]).get(), 2);
    }
}
