//! Record-at-a-time sending through an [`AggregatingProducer`]: records wait up to a linger time
//! (default 100 ms) so that aggregates fill, and each caller learns where its record landed.
//!
//! A background task flushes everything waiting when the oldest record has waited the linger
//! time, or earlier when enough is waiting to fill aggregates. Flushes run one after another, so
//! records are put in the order they were sent. If a record cannot be put, its bucket (every
//! partition key sharing its outer key) stops: its waiting and later records fail with
//! [`KinesisError::NotSent`] until [`Sender::resume`], so that the caller can put the failed
//! records again, in order, before anything later of those keys. (Within one flush, records of
//! a later commit window behind a failure fail too, with [`KinesisError::HeldBack`]; later
//! flushes of other buckets go on, so a re-put after them relies on the failover margin.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, Notify};
use zeroize::Zeroizing;

use crate::aggregate::bucket_of;
use crate::aggregating::AggregatingProducer;
use crate::producer::PutRecordResult;
use crate::{KinesisError, Result};

/// Default time a record waits for others to share its aggregate.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(100);

struct Waiting {
    key: String,
    payload: Zeroizing<Vec<u8>>,
    commit_time: Option<SystemTime>,
    since: Instant,
    done: oneshot::Sender<Result<PutRecordResult>>,
}

struct Queue {
    waiting: Vec<Waiting>,
    bytes: usize,
    stopped: HashSet<u32>,
    closed: bool,
}

struct Shared {
    producer: AggregatingProducer,
    linger: Duration,
    flush_bytes: usize,
    queue: Mutex<Queue>,
    wake: Notify,
}

/// Sends records one at a time through an aggregating producer; see the module documentation.
/// Cheap to clone; the flushing task ends when the last clone is dropped (after a last flush).
#[derive(Clone)]
pub struct Sender {
    shared: Arc<Shared>,
    _guard: Arc<CloseOnDrop>,
}

struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.0.wake.notify_one();
    }
}

impl AggregatingProducer {
    /// A record-at-a-time sender with `linger` (see [`DEFAULT_LINGER`]); flushes early when
    /// `flush_bytes` of payload wait (e.g. a few record limits). Spawns its flushing task on
    /// the current Tokio runtime.
    pub fn sender(self, linger: Duration, flush_bytes: usize) -> Sender {
        let shared = Arc::new(Shared {
            producer: self,
            linger,
            flush_bytes: flush_bytes.max(1),
            queue: Mutex::new(Queue { waiting: Vec::new(), bytes: 0, stopped: HashSet::new(), closed: false }),
            wake: Notify::new(),
        });
        tokio::spawn(flush_loop(shared.clone()));
        Sender { _guard: Arc::new(CloseOnDrop(shared.clone())), shared }
    }
}

impl Sender {
    /// Sends one record; resolves when it is in the stream (or failed).
    pub async fn send(
        &self,
        partition_key: &str,
        payload: &[u8],
        commit_time: Option<SystemTime>,
    ) -> Result<PutRecordResult> {
        let (done, result) = oneshot::channel();
        {
            let buckets = self.shared.producer.buckets();
            let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.stopped.contains(&bucket_of(partition_key, buckets)) {
                return Err(KinesisError::NotSent(partition_key.to_owned()));
            }
            q.bytes += payload.len();
            q.waiting.push(Waiting {
                key: partition_key.to_owned(),
                payload: Zeroizing::new(payload.to_vec()),
                commit_time,
                since: Instant::now(),
                done,
            });
            if q.bytes >= self.shared.flush_bytes || q.waiting.len() == 1 {
                self.shared.wake.notify_one();
            }
        }
        result.await.unwrap_or(Err(KinesisError::Internal("the flushing task ended before the record was put")))
    }

    /// Lets the stopped buckets send again (after the caller put their failed records again).
    pub fn resume(&self) {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).stopped.clear();
    }
}

/// What the flushing task does next.
enum Next {
    Flush(Vec<Waiting>, bool),
    Wait(Option<Duration>),
    Stop,
}

async fn flush_loop(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            let due = q.waiting.first().is_some_and(|w| w.since.elapsed() >= shared.linger)
                || q.bytes >= shared.flush_bytes
                || (q.closed && !q.waiting.is_empty());
            if due {
                q.bytes = 0;
                Next::Flush(std::mem::take(&mut q.waiting), q.closed)
            } else if q.closed {
                Next::Stop
            } else {
                Next::Wait(q.waiting.first().map(|w| shared.linger.saturating_sub(w.since.elapsed())))
            }
        };
        match next {
            Next::Stop => return,
            Next::Wait(Some(w)) => {
                let _ = tokio::time::timeout(w, shared.wake.notified()).await;
            }
            Next::Wait(None) => shared.wake.notified().await,
            Next::Flush(batch, closed) => {
                flush(&shared, batch).await;
                if closed && shared.queue.lock().unwrap_or_else(|p| p.into_inner()).waiting.is_empty() {
                    return;
                }
            }
        }
    }
}

async fn flush(shared: &Shared, batch: Vec<Waiting>) {
    let buckets = shared.producer.buckets();
    let report = shared.producer.put(batch.iter().map(|w| (w.key.as_str(), w.payload.as_slice(), w.commit_time))).await;
    let mut results: Vec<Option<Result<PutRecordResult>>> = batch.iter().map(|_| None).collect();
    for p in report.put {
        let i = p.index;
        results[i] = Some(Ok(p));
    }
    let mut stopped = Vec::new();
    for f in report.failed {
        stopped.push(bucket_of(&f.partition_key, buckets));
        let i = f.index;
        results[i] = Some(Err(f.error));
    }
    if !stopped.is_empty() {
        let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.stopped.extend(stopped.iter().copied());
        // Records of a stopped bucket that arrived during the flush must not overtake.
        let (keep, refuse): (Vec<Waiting>, Vec<Waiting>) =
            std::mem::take(&mut q.waiting).into_iter().partition(|w| !q.stopped.contains(&bucket_of(&w.key, buckets)));
        q.bytes = keep.iter().map(|w| w.payload.len()).sum();
        q.waiting = keep;
        drop(q);
        for w in refuse {
            let _ = w.done.send(Err(KinesisError::NotSent(w.key)));
        }
    }
    for (w, r) in batch.into_iter().zip(results) {
        let _ = w.done.send(r.unwrap_or(Err(KinesisError::Internal("a flushed record got no outcome"))));
    }
}
