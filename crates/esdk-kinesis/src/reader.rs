//! Polling reader over every shard of a stream (`ListShards`, `GetShardIterator`, `GetRecords`),
//! shared by the replicator's polling loop and consumers.
//!
//! **A record counts as read only when its batch is committed.** [`StreamReader::poll`] reads
//! one `GetRecords` page from each shard that is due and returns it as a [`Batch`]; nothing moves
//! until the caller passes the batch back to [`StreamReader::commit`] with how far each shard may
//! advance. A failure of any call (throttling, 5xx, timeouts, an expired iterator, a failed
//! `GetShardIterator`) affects only that shard in that poll: it stays at its committed position
//! and is retried after a backoff, and the records read from other shards are still returned.
//!
//! **Resharding.** Shards are listed again periodically and as soon as a shard is read to its
//! end; a child shard is read only after its parent(s) are finished (read and committed to their
//! ends), so per partition key the reader hands out records in order across splits and merges.
//!
//! **Pacing.** Each shard gets at most one `GetRecords` per [`ReaderConfig::min_interval`]
//! (Kinesis allows five per second per shard, shared by every consumer of the stream), waits
//! [`ReaderConfig::idle_interval`] after a read that found nothing new, and backs off
//! exponentially after a failure.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::types::ShardIteratorType;

use crate::retry::backoff;
use crate::{KinesisError, Result, SourceRecord};

/// Where a [`StreamReader`] starts in shards it has no position for.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StartPosition {
    /// The oldest record kept (the start of every shard).
    TrimHorizon,
    /// Only records put after opening (shards open at that time); shards that appear later are
    /// read from their start.
    Latest,
    /// Positions from checkpoints: per shard, after a sequence number or finished; shards not
    /// listed start at their beginning.
    Positions(HashMap<String, ShardPosition>),
}

/// A committed position in one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardPosition {
    /// After this sequence number.
    After(String),
    /// At this sequence number: it is read again (a consumer resuming inside an aggregate).
    At(String),
    /// The shard is read to its end.
    Finished,
}

/// Pacing and batching of a [`StreamReader`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReaderConfig {
    /// Records per `GetRecords` (1..=10,000).
    pub limit: i32,
    /// Least time between two `GetRecords` of one shard (Kinesis: 5 per second per shard).
    pub min_interval: Duration,
    /// Wait after a read that returned nothing and was not behind.
    pub idle_interval: Duration,
    /// How often shards are listed again (also after any shard reached its end).
    pub relist_interval: Duration,
    /// First backoff after a failed call; doubles up to `max_backoff`.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            limit: 1000,
            min_interval: Duration::from_millis(200),
            idle_interval: Duration::from_millis(500),
            relist_interval: Duration::from_secs(30),
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl ReaderConfig {
    /// Records per `GetRecords` (clamped to 1..=10,000).
    pub fn limit(mut self, limit: i32) -> Self {
        self.limit = limit.clamp(1, 10_000);
        self
    }

    /// Least time between two reads of one shard, and the wait after an empty read.
    pub fn intervals(mut self, min_interval: Duration, idle_interval: Duration) -> Self {
        self.min_interval = min_interval;
        self.idle_interval = idle_interval;
        self
    }

    /// How often shards are listed again.
    pub fn relist_interval(mut self, every: Duration) -> Self {
        self.relist_interval = every;
        self
    }

    /// Backoff after a failed call.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max;
        self
    }
}

/// A shard as Kinesis lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardInfo {
    /// Shard id.
    pub shard_id: String,
    /// The shard it was split from, or the first of the two it was merged from.
    pub parent: Option<String>,
    /// The second shard of a merge.
    pub adjacent_parent: Option<String>,
    /// Whether it is closed (has an ending sequence number).
    pub closed: bool,
}

impl ShardInfo {
    /// The parent shard ids.
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent.iter().chain(&self.adjacent_parent).map(String::as_str)
    }
}

/// Every shard of `stream` (`ListShards`, all pages).
pub(crate) async fn list_shards(client: &aws_sdk_kinesis::Client, stream: &str) -> Result<Vec<ShardInfo>> {
    let mut listed = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let req = match next.take() {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let out = req.send().await.map_err(|e| KinesisError::kinesis("ListShards", stream, &e))?;
        for s in out.shards() {
            listed.push(ShardInfo {
                shard_id: s.shard_id().to_owned(),
                parent: s.parent_shard_id().map(str::to_owned),
                adjacent_parent: s.adjacent_parent_shard_id().map(str::to_owned),
                closed: s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some(),
            });
        }
        match out.next_token() {
            Some(t) => next = Some(t.to_owned()),
            None => return Ok(listed),
        }
    }
}

struct Shard {
    info: ShardInfo,
    /// The committed position (`None`: the start position).
    committed: Option<Committed>,
    /// Where to start when `committed` is `None`.
    start: ShardIteratorType,
    /// An iterator at the committed position (iterators can be read again until they expire).
    iterator: Option<String>,
    finished: bool,
    due: Instant,
    failures: u32,
    millis_behind: Option<i64>,
}

/// A position a shard moved to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Committed {
    After(String),
    At(String),
}

impl Committed {
    fn sequence_number(&self) -> &str {
        match self {
            Self::After(s) | Self::At(s) => s,
        }
    }
}

/// What one poll read from one shard.
#[derive(Clone, Debug)]
struct ShardRead {
    shard_id: String,
    /// The committed position the read started from.
    from: Option<Committed>,
    last_sequence_number: Option<String>,
    next_iterator: Option<String>,
}

/// Records read by one [`StreamReader::poll`], not yet committed.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Batch {
    /// The records, shard by shard, each shard's in sequence order.
    pub records: Vec<SourceRecord>,
    /// Calls that failed in this poll, per shard (those shards did not move and are retried
    /// after a backoff).
    pub errors: Vec<(String, KinesisError)>,
    reads: Vec<ShardRead>,
}

impl Batch {
    /// Whether no record was read.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Shards that reached their end in this batch, with the last sequence number read or
    /// committed in them (`None`: the shard holds no record). Committing everything read from
    /// them finishes them.
    pub fn shards_at_end(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.reads.iter().filter(|r| r.next_iterator.is_none()).map(|r| {
            let from = r.from.as_ref().map(Committed::sequence_number);
            (r.shard_id.as_str(), r.last_sequence_number.as_deref().or(from))
        })
    }
}

/// How far [`StreamReader::commit`] moves a shard read in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advance {
    /// Everything read from it (and, at its end, finish it).
    All,
    /// Up to and including this sequence number (the records after it are read again).
    UpTo(String),
    /// Up to this sequence number, excluding it (it is read again: a consumer stopped inside
    /// the aggregate it holds).
    Before(String),
    /// Nothing: read the same records again.
    Nothing,
}

/// Reads all shards of one stream; see the module documentation.
pub struct StreamReader {
    client: aws_sdk_kinesis::Client,
    stream: String,
    config: ReaderConfig,
    shards: BTreeMap<String, Shard>,
    start: StartPosition,
    next_list: Instant,
    new_shards: Vec<ShardInfo>,
}

impl StreamReader {
    /// Lists the stream's shards. Iterators are obtained lazily by the first poll of each shard.
    pub async fn open(client: aws_sdk_kinesis::Client, stream: &str, start: StartPosition) -> Result<Self> {
        Self::open_with(client, stream, start, ReaderConfig::default()).await
    }

    /// [`Self::open`] with explicit pacing.
    pub async fn open_with(
        client: aws_sdk_kinesis::Client,
        stream: &str,
        start: StartPosition,
        config: ReaderConfig,
    ) -> Result<Self> {
        let mut reader = Self {
            client,
            stream: stream.to_owned(),
            config,
            shards: BTreeMap::new(),
            start,
            next_list: Instant::now(),
            new_shards: Vec::new(),
        };
        reader.list_shards().await?;
        Ok(reader)
    }

    /// The stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Every shard known, with whether it is finished.
    pub fn shards(&self) -> impl Iterator<Item = (&ShardInfo, bool)> {
        self.shards.values().map(|s| (&s.info, s.finished))
    }

    /// Shards listed since the last call (first call: all of them), for registering them.
    pub fn take_new_shards(&mut self) -> Vec<ShardInfo> {
        std::mem::take(&mut self.new_shards)
    }

    /// Hands shards from [`Self::take_new_shards`] back (their registration failed).
    pub fn requeue_new_shards(&mut self, mut shards: Vec<ShardInfo>) {
        shards.append(&mut self.new_shards);
        self.new_shards = shards;
    }

    /// The largest `MillisBehindLatest` of the last read of each unfinished shard.
    pub fn millis_behind_latest(&self) -> i64 {
        self.shards.values().filter(|s| !s.finished).filter_map(|s| s.millis_behind).max().unwrap_or(0)
    }

    /// Whether every shard is finished (a closed stream read to its end).
    pub fn all_finished(&self) -> bool {
        !self.shards.is_empty() && self.shards.values().all(|s| s.finished)
    }

    async fn list_shards(&mut self) -> Result<()> {
        let listed = list_shards(&self.client, &self.stream).await?;
        let now = Instant::now();
        let first_listing = self.shards.is_empty();
        for info in listed {
            if let Some(known) = self.shards.get_mut(&info.shard_id) {
                known.info.closed = info.closed;
                continue;
            }
            let (committed, finished, start) = match &self.start {
                StartPosition::Positions(map) => match map.get(&info.shard_id) {
                    Some(ShardPosition::After(seq)) => {
                        (Some(Committed::After(seq.clone())), false, ShardIteratorType::TrimHorizon)
                    }
                    Some(ShardPosition::At(seq)) => {
                        (Some(Committed::At(seq.clone())), false, ShardIteratorType::TrimHorizon)
                    }
                    Some(ShardPosition::Finished) => (None, true, ShardIteratorType::TrimHorizon),
                    None => (None, false, ShardIteratorType::TrimHorizon),
                },
                // Only the shards open when the reader starts begin at the tip.
                StartPosition::Latest if first_listing && !info.closed => (None, false, ShardIteratorType::Latest),
                _ => (None, false, ShardIteratorType::TrimHorizon),
            };
            self.new_shards.push(info.clone());
            self.shards.insert(
                info.shard_id.clone(),
                Shard { info, committed, start, iterator: None, finished, due: now, failures: 0, millis_behind: None },
            );
        }
        self.next_list = now + self.config.relist_interval;
        Ok(())
    }

    /// Whether a shard may be read: not finished, and every parent known to the reader finished
    /// (a parent no longer listed has aged out of the stream's retention).
    fn readable(&self, shard: &Shard) -> bool {
        !shard.finished && shard.info.parents().all(|p| self.shards.get(p).is_none_or(|parent| parent.finished))
    }

    async fn iterator(&self, shard: &Shard) -> Result<Option<String>> {
        let (kind, seq) = match &shard.committed {
            Some(Committed::After(seq)) => (ShardIteratorType::AfterSequenceNumber, Some(seq.clone())),
            Some(Committed::At(seq)) => (ShardIteratorType::AtSequenceNumber, Some(seq.clone())),
            None => (shard.start.clone(), None),
        };
        let out = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&shard.info.shard_id)
            .shard_iterator_type(kind)
            .set_starting_sequence_number(seq)
            .send()
            .await
            .map_err(|e| KinesisError::kinesis("GetShardIterator", &self.stream, &e))?;
        Ok(out.shard_iterator().map(str::to_owned))
    }

    /// Waits until at least one shard is due, then reads one page from every due shard. Never
    /// fails as a whole: failed calls are in [`Batch::errors`] and their shards did not move.
    pub async fn poll(&mut self) -> Batch {
        let mut batch = Batch::default();
        if Instant::now() >= self.next_list {
            if let Err(e) = self.list_shards().await {
                self.next_list = Instant::now() + self.config.base_backoff;
                batch.errors.push((String::new(), e));
            }
        }
        let readable: Vec<String> =
            self.shards.values().filter(|s| self.readable(s)).map(|s| s.info.shard_id.clone()).collect();
        let Some(earliest) = readable.iter().map(|id| self.shards[id].due).min() else {
            // Nothing to read now (all finished, or waiting on parents): list again soon.
            tokio::time::sleep(self.config.idle_interval).await;
            self.next_list = self.next_list.min(Instant::now());
            return batch;
        };
        tokio::time::sleep_until(earliest.into()).await;
        let now = Instant::now();
        for id in readable {
            if self.shards[&id].due > now {
                continue;
            }
            if let Err(e) = self.read_shard(&id, &mut batch).await {
                let Some(shard) = self.shards.get_mut(&id) else { continue };
                if matches!(&e, KinesisError::Kinesis { code, .. } if code == "ExpiredIteratorException") {
                    shard.iterator = None;
                }
                let wait = backoff(self.config.base_backoff, self.config.max_backoff, shard.failures);
                shard.failures = shard.failures.saturating_add(1);
                shard.due = Instant::now() + wait.max(self.config.min_interval);
                tracing::debug!(shard = %id, error = %e, "read failed; the shard stays at its committed position");
                batch.errors.push((id, e));
            }
        }
        batch
    }

    async fn read_shard(&mut self, id: &str, batch: &mut Batch) -> Result<()> {
        let Some(shard) = self.shards.get(id) else { return Ok(()) };
        let iterator = match &shard.iterator {
            Some(it) => it.clone(),
            None => match self.iterator(shard).await? {
                Some(it) => it,
                // No iterator: a closed shard whose end is behind the position.
                None => {
                    batch.reads.push(ShardRead {
                        shard_id: id.to_owned(),
                        from: shard.committed.clone(),
                        last_sequence_number: None,
                        next_iterator: None,
                    });
                    return Ok(());
                }
            },
        };
        let out = self
            .client
            .get_records()
            .shard_iterator(&iterator)
            .limit(self.config.limit)
            .send()
            .await
            .map_err(|e| KinesisError::kinesis("GetRecords", &self.stream, &e))?;
        let Some(shard) = self.shards.get_mut(id) else { return Ok(()) };
        shard.iterator = Some(iterator);
        shard.failures = 0;
        shard.millis_behind = out.millis_behind_latest();
        let records = out.records();
        let caught_up = records.is_empty() && out.millis_behind_latest().unwrap_or(0) == 0;
        shard.due = Instant::now() + if caught_up { self.config.idle_interval } else { self.config.min_interval };
        let next_iterator = out.next_shard_iterator().map(str::to_owned);
        if records.is_empty() && next_iterator.is_some() {
            // Nothing new: the next iterator is at the same position (it need not be committed).
            shard.iterator = next_iterator;
            return Ok(());
        }
        for r in records {
            batch.records.push(SourceRecord {
                shard_id: id.to_owned(),
                sequence_number: r.sequence_number().to_owned(),
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                data: bytes::Bytes::copy_from_slice(r.data().as_ref()),
                arrival: r.approximate_arrival_timestamp().and_then(|t| SystemTime::try_from(*t).ok()),
            });
        }
        batch.reads.push(ShardRead {
            shard_id: id.to_owned(),
            from: shard.committed.clone(),
            last_sequence_number: records.last().map(|r| r.sequence_number().to_owned()),
            next_iterator,
        });
        Ok(())
    }

    /// Moves each shard read in `batch` as `advance(shard id)` says. A shard whose position
    /// changed since the batch was read (another commit) is left alone.
    pub fn commit(&mut self, batch: &Batch, advance: impl Fn(&str) -> Advance) {
        let mut ended = false;
        for read in &batch.reads {
            let Some(shard) = self.shards.get_mut(&read.shard_id) else { continue };
            if shard.committed != read.from {
                continue;
            }
            match advance(&read.shard_id) {
                Advance::Nothing => {}
                Advance::Before(seq) => {
                    shard.committed = Some(Committed::At(seq));
                    shard.iterator = None;
                }
                Advance::UpTo(seq) if Some(&seq) != read.last_sequence_number.as_ref() => {
                    shard.committed = Some(Committed::After(seq));
                    shard.iterator = None;
                }
                Advance::All | Advance::UpTo(_) => {
                    if let Some(last) = &read.last_sequence_number {
                        shard.committed = Some(Committed::After(last.clone()));
                    }
                    shard.iterator = read.next_iterator.clone();
                    if read.next_iterator.is_none() {
                        shard.finished = true;
                        ended = true;
                    }
                }
            }
        }
        if ended {
            // A finished shard may unblock children, and new ones may exist: list at once.
            self.next_list = Instant::now();
        }
    }

    /// The committed position of every shard (for checkpointing by callers that keep their own).
    pub fn positions(&self) -> HashMap<String, ShardPosition> {
        self.shards
            .values()
            .filter_map(|s| {
                if s.finished {
                    Some((s.info.shard_id.clone(), ShardPosition::Finished))
                } else {
                    let position = match s.committed.clone()? {
                        Committed::After(seq) => ShardPosition::After(seq),
                        Committed::At(seq) => ShardPosition::At(seq),
                    };
                    Some((s.info.shard_id.clone(), position))
                }
            })
            .collect()
    }
}
