//! Crypto-blind cross-Region replicator: forwards record bytes unchanged, reading only public
//! header fields (origin Region, commit time, EDK key ARNs). Needs no KMS permission.
//!
//! **What it forwards.** Exactly the records whose origin Region (written by the record codec)
//! is the source Region: a record is never forwarded back to its origin, and a record produced
//! in the source Region while it was not the active one (split brain during a failover) still
//! reaches the other Region. The active-Region flag is read for every batch: a missing or
//! unreadable flag fails the batch (retryable), it is never taken as "skip".
//!
//! **What it refuses.** Records whose header does not parse, that carry no origin Region, or
//! whose EDKs are not allow-listed go to the dead-letter queue with the reason and their source
//! position; without a queue, the shard's checkpoint stops before them and the batch reports
//! [`KinesisError::Refused`].
//!
//! **Checkpoints and the failover watermark.** After the destination acknowledged the records,
//! each shard's checkpoint moves to the last record before its first failure, with a
//! *watermark*: the smallest commit time over the last [`WATERMARK_WINDOW`] records read from the
//! shard (an aggregate, whose commit time bounds all its user records, counts as
//! [`AGGREGATE_WEIGHT`] records, so the last two aggregates decide), and of every record read
//! from it but not yet replicated. Commit times come from headers that
//! nothing has authenticated at this point, so each is first clamped to the record's
//! `ApproximateArrivalTimestamp` (assigned by Kinesis) plus [`DEFAULT_CLOCK_SKEW`]: a forged
//! future commit time cannot push the watermark ahead of real time, and a forged past one only
//! makes a failover replay more. The resume point of a failover
//! ([`ControlTable::resume_point`]) is the smallest watermark over every registered shard minus
//! a disorder margin, so it is never later than the commit time of any record not yet
//! replicated, provided producers put a shard's records in commit-time order to within the
//! margin (CDC producers read a commit-ordered log; retries reorder by seconds; the aggregating
//! producer sends a put's aggregates in commit order, rank by rank). A record without a commit
//! time counts with its arrival time, as one record, whatever its header says.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use esdk::keyring::kms::{mrk_match, KeyIdentifier};

use crate::control::{Checkpoint, CheckpointWrite, ControlTable};
use crate::dlq::{DeadLetter, DeadLetterQueue};
use crate::put::{put_ordered, EntryOutcome, PutConfig, SendOrder};
use crate::reader::{Advance, Batch, ReaderConfig, ShardPosition, StartPosition, StreamReader};
use crate::record::RecordHeader;
use crate::source::seq_cmp;
use crate::{KinesisError, Result, SourceRecord};

/// Records per shard over which the watermark is the minimum commit time: a few forged or
/// out-of-order commit times among them do not raise it (and the clamp to arrival times bounds
/// what a longer run of forged ones can do).
pub const WATERMARK_WINDOW: usize = 8;
/// How many of the [`WATERMARK_WINDOW`] records an aggregate with a commit time counts as:
/// half, so the two last aggregates of a shard decide its watermark and one stray aggregate
/// does not. Its commit time bounds every user record inside, and the aggregating producer sends
/// a shard's aggregates in commit order ([`crate::AggregatingProducer::put`]), so the
/// aggregates before the last two need not hold the watermark back (by eight aggregates, they
/// would reach back several puts: a failover would replay up to a commit window more, and pay a
/// data key for it). The aggregate flag is not authenticated: two forged "aggregates" in a row
/// now do what eight forged records did, and the clamp to arrival plus
/// [`DEFAULT_CLOCK_SKEW`] still bounds both.
pub const AGGREGATE_WEIGHT: usize = WATERMARK_WINDOW / 2;
/// How far a header's commit time may lie after the record's arrival before it is clamped.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// Counters a caller can read (monotonic, except the lag gauge).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReplicatorMetrics {
    /// Records forwarded to the destination.
    pub records_replicated: AtomicU64,
    /// Of those, KPL aggregates of user records (their headers say so; how many user records
    /// each holds is encrypted).
    pub aggregates_replicated: AtomicU64,
    /// Records skipped because they came from another Region (replicas; loop prevention).
    pub records_skipped_replicas: AtomicU64,
    /// Records refused (unparsable header, no origin Region, EDK key not allow-listed).
    pub records_refused: AtomicU64,
    /// Records sent to the dead-letter queue.
    pub records_dead_lettered: AtomicU64,
    /// Records not forwarded in a batch (to be retried).
    pub records_failed: AtomicU64,
    /// Records forwarded while the source Region was not the active one (split brain).
    pub records_forwarded_while_inactive: AtomicU64,
    /// Batches handled.
    pub batches: AtomicU64,
    /// Batches that failed as a whole (flag or checkpoint unreadable/unwritable).
    pub batches_failed: AtomicU64,
    /// Time from the source's arrival timestamp to the destination's acknowledgement, for the
    /// last forwarded record, in milliseconds.
    pub last_lag_ms: AtomicU64,
    /// Largest such lag seen, in milliseconds.
    pub max_lag_ms: AtomicU64,
}

/// A record the replicator would not forward.
#[derive(Debug)]
#[non_exhaustive]
pub struct RefusedRecord {
    /// Source shard.
    pub shard_id: String,
    /// Its sequence number.
    pub sequence_number: String,
    /// Why.
    pub reason: String,
    /// Whether it is in the dead-letter queue (`false`: not checkpointed past).
    pub dead_lettered: bool,
}

/// What one batch did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// The active Region when the batch ran.
    pub active_region: Option<crate::ActiveRegion>,
    /// Records in the batch.
    pub records: usize,
    /// Records forwarded.
    pub replicated: usize,
    /// Of those, aggregates of user records.
    pub aggregates: usize,
    /// Records skipped because they originated in another Region (already replicas).
    pub skipped_replicas: usize,
    /// Records refused (see [`RefusedRecord::dead_lettered`]).
    pub refused: Vec<RefusedRecord>,
    /// Per shard, the first record that was not handled (forwarding failed, or refused without a
    /// dead-letter queue): the shard resumes there; nothing at or after it is checkpointed.
    pub failed: Vec<(String, String)>,
    /// Errors behind `failed`, one per shard.
    pub errors: Vec<KinesisError>,
    /// Checkpoints written (or found stale), per shard.
    pub checkpoints: Vec<(Checkpoint, CheckpointWrite)>,
    /// Shards whose position did not move but whose watermark was lowered to cover records read
    /// and not replicated.
    pub watermarks_only: usize,
    /// Lag of the last forwarded record (source arrival → destination acknowledgement).
    pub lag: Option<Duration>,
    /// Arrival time of the last forwarded record.
    pub last_arrival: Option<SystemTime>,
    /// Per shard, how far the reader may move.
    advance: HashMap<String, Advance>,
}

impl BatchOutcome {
    /// How far the reader may move in `shard_id`.
    pub fn advance(&self, shard_id: &str) -> Advance {
        self.advance.get(shard_id).cloned().unwrap_or(Advance::All)
    }

    /// Whether the batch did anything (forwarded, skipped, refused or failed records).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// Builds a [`Replicator`].
pub struct ReplicatorBuilder {
    source_region: String,
    stream: String,
    destination: Option<(aws_sdk_kinesis::Client, String)>,
    flag: Option<ControlTable>,
    checkpoints: Option<ControlTable>,
    allowed_keys: Option<Vec<KeyIdentifier>>,
    dead_letter_queue: Option<DeadLetterQueue>,
    put: PutConfig,
    reader: ReaderConfig,
    clock_skew: Duration,
    flag_ttl: Duration,
}

impl ReplicatorBuilder {
    /// The destination: a Kinesis client of the destination Region and the stream name there
    /// (default: the source stream's name).
    pub fn destination(mut self, client: aws_sdk_kinesis::Client, stream: Option<&str>) -> Self {
        let name = stream.unwrap_or(&self.stream).to_owned();
        self.destination = Some((client, name));
        self
    }

    /// The control table holding the active-Region flag (default: the checkpoint table).
    pub fn flag_table(mut self, table: ControlTable) -> Self {
        self.flag = Some(table);
        self
    }

    /// The control table receiving checkpoints: use the destination Region's, so they survive an
    /// outage of the source Region.
    pub fn checkpoint_table(mut self, table: ControlTable) -> Self {
        self.checkpoints = Some(table);
        self
    }

    /// Only forward records whose every `aws-kms` EDK is wrapped under one of these keys (MRK
    /// replicas match each other); others are refused. Key ARNs only.
    pub fn allowed_keys<S: AsRef<str>>(mut self, keys: impl IntoIterator<Item = S>) -> Result<Self> {
        let mut parsed = Vec::new();
        for k in keys {
            let id = KeyIdentifier::parse(k.as_ref())?;
            if id.key_arn().is_none() {
                return Err(KinesisError::InvalidConfig(format!(
                    "allow-list entry {:?} is not a key ARN; aliases and bare key ids cannot be matched against EDKs",
                    k.as_ref()
                )));
            }
            parsed.push(id);
        }
        self.allowed_keys = Some(parsed);
        Ok(self)
    }

    /// Where refused records go (with reason and source position).
    pub fn dead_letter_queue(mut self, queue: DeadLetterQueue) -> Self {
        self.dead_letter_queue = Some(queue);
        self
    }

    /// Batching and retry settings for the destination `PutRecords`.
    pub fn put_config(mut self, put: PutConfig) -> Result<Self> {
        put.validate()?;
        self.put = put;
        Ok(self)
    }

    /// Pacing of the polling loop's reader.
    pub fn reader_config(mut self, reader: ReaderConfig) -> Self {
        self.reader = reader;
        self
    }

    /// How long the active-Region flag is trusted once read (default 1 s; it only decides the
    /// split-brain warning and metric, never what is forwarded).
    pub fn flag_ttl(mut self, ttl: Duration) -> Self {
        self.flag_ttl = ttl;
        self
    }

    /// How far a header's commit time may lie after the record's arrival (default 5 s).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Checks that the destination and the checkpoint table were given.
    pub fn build(self) -> Result<Replicator> {
        let (destination, destination_stream) = self
            .destination
            .ok_or_else(|| KinesisError::InvalidConfig("the replicator needs a destination (Kinesis client)".into()))?;
        let checkpoints = self
            .checkpoints
            .ok_or_else(|| KinesisError::InvalidConfig("the replicator needs a checkpoint table".into()))?;
        Ok(Replicator {
            flag: self.flag.unwrap_or_else(|| checkpoints.clone()),
            checkpoints,
            source_region: self.source_region,
            stream: self.stream,
            destination,
            destination_stream,
            allowed_keys: self.allowed_keys,
            dead_letter_queue: self.dead_letter_queue,
            put: self.put,
            reader: self.reader,
            clock_skew: self.clock_skew,
            flag_ttl: self.flag_ttl,
            flag_cache: Mutex::new(None),
            metrics: Arc::default(),
            windows: Mutex::new(HashMap::new()),
        })
    }
}

/// Forwards records from the stream in `source_region` to the same stream in the destination.
pub struct Replicator {
    source_region: String,
    stream: String,
    destination: aws_sdk_kinesis::Client,
    destination_stream: String,
    flag: ControlTable,
    checkpoints: ControlTable,
    allowed_keys: Option<Vec<KeyIdentifier>>,
    dead_letter_queue: Option<DeadLetterQueue>,
    put: PutConfig,
    reader: ReaderConfig,
    clock_skew: Duration,
    flag_ttl: Duration,
    flag_cache: Mutex<Option<(std::time::Instant, crate::ActiveRegion)>>,
    metrics: Arc<ReplicatorMetrics>,
    /// Per shard, the clamped commit times of the last records of the source Region read, and
    /// the arrival time of the last record read (the watermark of a shard that holds only
    /// replicas so far).
    windows: Mutex<HashMap<String, TrailingMin>>,
}

/// What to do with one record.
enum Screen {
    /// `slots`: how many records of the watermark window it counts as.
    Forward {
        commit_time: SystemTime,
        aggregate: bool,
        slots: u64,
    },
    Replica,
    Refuse(String),
}

impl Replicator {
    /// Starts a builder for the stream `stream` read in `source_region`.
    pub fn builder(source_region: &str, stream: &str) -> ReplicatorBuilder {
        ReplicatorBuilder {
            source_region: source_region.to_owned(),
            stream: stream.to_owned(),
            destination: None,
            flag: None,
            checkpoints: None,
            allowed_keys: None,
            dead_letter_queue: None,
            put: PutConfig::default(),
            reader: ReaderConfig::default(),
            clock_skew: DEFAULT_CLOCK_SKEW,
            flag_ttl: Duration::from_secs(1),
        }
    }

    /// Reads the active-Region flag into the cache (valid for the flag TTL), so that the next
    /// batch within the TTL does not wait for it: what a Lambda cold start does during init.
    pub async fn prefetch_active_region(&self) -> Result<()> {
        self.active_region().await.map(drop)
    }

    /// The active-Region flag, read at most once per flag TTL.
    async fn active_region(&self) -> Result<crate::ActiveRegion> {
        let cached = self.flag_cache.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((at, flag)) = cached.filter(|(at, _)| at.elapsed() < self.flag_ttl) {
            let _ = at;
            return Ok(flag);
        }
        let flag = self.flag.active_region(&self.stream).await?;
        *self.flag_cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), flag.clone()));
        Ok(flag)
    }

    /// The destination stream.
    pub fn destination_stream(&self) -> &str {
        &self.destination_stream
    }

    /// The counters.
    pub fn metrics(&self) -> Arc<ReplicatorMetrics> {
        self.metrics.clone()
    }

    /// The logical stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The source Region.
    pub fn source_region(&self) -> &str {
        &self.source_region
    }

    /// The checkpoint table.
    pub fn checkpoint_table(&self) -> &ControlTable {
        &self.checkpoints
    }

    /// What to do with `record`, from its header alone.
    fn screen(&self, record: &SourceRecord) -> Screen {
        let header = match RecordHeader::parse(&record.data) {
            Ok(h) => h,
            Err(e) => return Screen::Refuse(format!("not an ESDK message: {e}")),
        };
        match header.origin_region() {
            None => {
                return Screen::Refuse(
                    "its header names no origin Region (kinesis-origin-region): it cannot be told apart from a replica"
                        .into(),
                )
            }
            Some(o) if o != self.source_region => return Screen::Replica,
            Some(_) => {}
        }
        if let Some(allowed) = &self.allowed_keys {
            for (i, edk) in header.header().encrypted_data_keys().iter().enumerate() {
                let info = String::from_utf8_lossy(&edk.provider_info);
                let ok = edk.provider_id == "aws-kms"
                    && KeyIdentifier::parse(&info).is_ok_and(|id| allowed.iter().any(|a| mrk_match(a, &id)));
                if !ok {
                    let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
                    return Screen::Refuse(format!(
                        "EDK #{i} ({}/{info}) is not wrapped under an allow-listed key; allowed: [{}]",
                        edk.provider_id,
                        list.join(", ")
                    ));
                }
            }
        }
        // The header is not authenticated here: clamp its commit time to Kinesis' arrival time.
        let arrival = record.arrival.unwrap_or_else(SystemTime::now);
        let ceiling = arrival + self.clock_skew;
        let aggregate = header.is_aggregate();
        let (commit_time, slots) = match header.commit_time() {
            Ok(Some(t)) => (t.min(ceiling), if aggregate { AGGREGATE_WEIGHT as u64 } else { 1 }),
            // Without a commit time the arrival stands in, for one slot only: it bounds nothing.
            Ok(None) | Err(_) => (arrival, 1),
        };
        Screen::Forward { commit_time, aggregate, slots }
    }

    /// Replicates the records of a batch read by the polling loop (see [`Self::run`]).
    pub async fn replicate(&self, batch: &Batch) -> Result<BatchOutcome> {
        let ends: Vec<(&str, Option<&str>)> = batch.shards_at_end().collect();
        self.replicate_records(&batch.records, &ends).await
    }

    /// Replicates one batch (records of one or more shards, each shard's in sequence order):
    /// reads the active-Region flag, screens headers, dead-letters refused records, forwards in
    /// order with the same partition keys, then checkpoints each shard up to its last record
    /// before any failure. `ends` names shards read to their end in this batch (with their last
    /// sequence number), which are checkpointed as finished when nothing of them failed.
    ///
    /// An error means nothing was checkpointed: the batch must be read again.
    pub async fn replicate_records(
        &self,
        records: &[SourceRecord],
        ends: &[(&str, Option<&str>)],
    ) -> Result<BatchOutcome> {
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "replicate_batch",
            stream = %self.stream,
            source = %self.source_region,
            shard = records.first().map_or("", |r| r.shard_id.as_str()),
            first_sequence_number = records.first().map_or("", |r| r.sequence_number.as_str()),
            records = records.len(),
        );
        let result = tracing::Instrument::instrument(self.replicate_inner(records, ends), span).await;
        if result.is_err() {
            self.metrics.batches_failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn replicate_inner(&self, records: &[SourceRecord], ends: &[(&str, Option<&str>)]) -> Result<BatchOutcome> {
        let mut outcome = BatchOutcome { records: records.len(), ..BatchOutcome::default() };
        if records.is_empty() && ends.is_empty() {
            return Ok(outcome);
        }
        let flag = self.active_region().await?;
        let source_active = flag.region == self.source_region;
        outcome.active_region = Some(flag);

        // Screen every record; dead-letter the refused ones.
        let mut failed: Vec<Option<KinesisError>> = (0..records.len()).map(|_| None).collect();
        let mut forward: Vec<usize> = Vec::new();
        let mut commit_times: Vec<Option<SystemTime>> = vec![None; records.len()];
        let mut aggregates = vec![false; records.len()];
        let mut slots = vec![1u64; records.len()];
        let mut refused: Vec<(usize, String)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let _record = tracing::debug_span!(
                "record",
                shard = %r.shard_id,
                sequence_number = %r.sequence_number,
                message_id = %crate::record::message_id(&r.data).map(hex).unwrap_or_default(),
            )
            .entered();
            match self.screen(r) {
                Screen::Forward { commit_time, aggregate, slots: n } => {
                    commit_times[i] = Some(commit_time);
                    aggregates[i] = aggregate;
                    slots[i] = n;
                    forward.push(i);
                }
                Screen::Replica => outcome.skipped_replicas += 1,
                Screen::Refuse(reason) => refused.push((i, reason)),
            }
        }
        self.dead_letter(records, refused, &mut failed, &mut outcome).await;

        // Forward, in order per partition key.
        let entries: Vec<(&str, &bytes::Bytes)> =
            forward.iter().map(|&i| (records[i].partition_key.as_str(), &records[i].data)).collect();
        let (outcomes, _) =
            put_ordered(&self.destination, &self.destination_stream, &entries, &self.put, SendOrder::PerKey).await;
        let acked = SystemTime::now();
        for (&i, o) in forward.iter().zip(outcomes) {
            match o {
                EntryOutcome::Put { .. } => {
                    outcome.replicated += 1;
                    outcome.aggregates += usize::from(aggregates[i]);
                    if let Some(arrival) = records[i].arrival {
                        outcome.lag = acked.duration_since(arrival).ok();
                        outcome.last_arrival = Some(arrival);
                    }
                }
                EntryOutcome::Failed(e) => failed[i] = Some(e),
            }
        }

        self.checkpoint(records, ends, &commit_times, &slots, failed, &mut outcome).await?;
        self.count(&outcome, source_active);
        Ok(outcome)
    }

    /// Sends refused records to the dead-letter queue; those it did not take (or all of them,
    /// without a queue) become failures.
    async fn dead_letter(
        &self,
        records: &[SourceRecord],
        refused: Vec<(usize, String)>,
        failed: &mut [Option<KinesisError>],
        outcome: &mut BatchOutcome,
    ) {
        if refused.is_empty() {
            return;
        }
        let sent: Vec<Result<()>> = match &self.dead_letter_queue {
            Some(dlq) => {
                let letters: Vec<DeadLetter<'_>> = refused
                    .iter()
                    .map(|(i, reason)| DeadLetter { record: &records[*i], reason: reason.clone() })
                    .collect();
                dlq.send(&self.stream, &self.source_region, &letters).await
            }
            None => refused
                .iter()
                .map(|(i, reason)| {
                    Err(KinesisError::Refused {
                        shard_id: records[*i].shard_id.clone(),
                        sequence_number: records[*i].sequence_number.clone(),
                        reason: reason.clone(),
                    })
                })
                .collect(),
        };
        for ((i, reason), result) in refused.into_iter().zip(sent) {
            let r = &records[i];
            tracing::warn!(shard = %r.shard_id, sequence_number = %r.sequence_number, %reason, "record refused");
            let dead_lettered = result.is_ok();
            if let Err(e) = result {
                failed[i] = Some(e);
            }
            outcome.refused.push(RefusedRecord {
                shard_id: r.shard_id.clone(),
                sequence_number: r.sequence_number.clone(),
                reason,
                dead_lettered,
            });
        }
    }

    /// Per shard: the watermark over the records read, the checkpoint at the last record before
    /// the first failure, and how far the reader may move.
    async fn checkpoint(
        &self,
        records: &[SourceRecord],
        ends: &[(&str, Option<&str>)],
        commit_times: &[Option<SystemTime>],
        slots: &[u64],
        mut failed: Vec<Option<KinesisError>>,
        outcome: &mut BatchOutcome,
    ) -> Result<()> {
        struct Progress {
            last_ok: Option<usize>,
            failed_at: Option<usize>,
        }
        let mut shards: Vec<&str> = Vec::new();
        let mut progress: HashMap<&str, Progress> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let shard = r.shard_id.as_str();
            let p = progress.entry(shard).or_insert_with(|| {
                shards.push(shard);
                Progress { last_ok: None, failed_at: None }
            });
            if p.failed_at.is_some() {
                continue;
            }
            if failed[i].is_some() {
                p.failed_at = Some(i);
            } else if p.last_ok.is_none_or(|j| seq_cmp(&records[j].sequence_number, &r.sequence_number).is_lt()) {
                p.last_ok = Some(i);
            }
        }
        // The watermark: the smallest commit time of the records read but not replicated, and
        // of the last records replicated (a few forged or out-of-order ones do not raise it).
        let mut watermarks: HashMap<&str, Option<SystemTime>> = HashMap::new();
        {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let mut pending: HashMap<&str, SystemTime> = HashMap::new();
            for (i, r) in records.iter().enumerate() {
                let shard = r.shard_id.as_str();
                let replicated = progress[shard].failed_at.is_none_or(|f| i < f);
                let window = windows.entry(shard.to_owned()).or_default();
                match (commit_times[i], replicated) {
                    (Some(t), true) => window.push(t, slots[i]),
                    (Some(t), false) => {
                        let m = pending.entry(shard).or_insert(t);
                        *m = (*m).min(t);
                    }
                    (None, _) => window.last_arrival = r.arrival.or(window.last_arrival),
                }
            }
            for shard in &shards {
                let replicated = windows.get(*shard).and_then(|w| w.min().or(w.last_arrival));
                let mark = match (replicated, pending.get(shard)) {
                    (Some(a), Some(b)) => Some(a.min(*b)),
                    (a, b) => a.or(b.copied()),
                };
                watermarks.insert(shard, mark);
            }
        }
        for (shard, _) in ends {
            if !progress.contains_key(shard) {
                shards.push(shard);
                progress.insert(shard, Progress { last_ok: None, failed_at: None });
            }
        }
        let ended: HashMap<&str, Option<&str>> = ends.iter().copied().collect();
        for shard in shards {
            let p = &progress[shard];
            let at_end = ended.get(shard);
            let last_seq = p.last_ok.map(|i| records[i].sequence_number.as_str());
            let advance = match (p.failed_at, last_seq) {
                (Some(i), Some(seq)) => {
                    outcome.failed.push((shard.to_owned(), records[i].sequence_number.clone()));
                    outcome.errors.extend(failed[i].take());
                    Advance::UpTo(seq.to_owned())
                }
                (Some(i), None) => {
                    outcome.failed.push((shard.to_owned(), records[i].sequence_number.clone()));
                    outcome.errors.extend(failed[i].take());
                    Advance::Nothing
                }
                (None, _) => Advance::All,
            };
            let finished = advance == Advance::All && at_end.is_some();
            let seq = match (&advance, last_seq, at_end) {
                (Advance::Nothing, _, _) => None,
                (_, Some(seq), _) => Some(seq),
                (_, None, Some(end)) => Some(end.unwrap_or("0")),
                (_, None, None) => None,
            };
            if let (None, Some(w)) = (seq, watermarks.get(shard).copied().flatten()) {
                // The position stays, but what was read and not replicated lowers the mark.
                self.checkpoints.set_watermark(&self.stream, &self.source_region, shard, w).await?;
                outcome.watermarks_only += 1;
            }
            if let Some(seq) = seq {
                let mut cp = Checkpoint::new(
                    &self.stream,
                    &self.source_region,
                    shard,
                    seq,
                    watermarks.get(shard).copied().flatten(),
                );
                if finished {
                    cp = cp.finished();
                }
                let written = self.checkpoints.write_checkpoint(&cp).await?;
                outcome.checkpoints.push((cp, written));
            }
            outcome.advance.insert(shard.to_owned(), advance);
        }
        Ok(())
    }

    fn count(&self, outcome: &BatchOutcome, source_active: bool) {
        let m = &self.metrics;
        m.records_replicated.fetch_add(outcome.replicated as u64, Ordering::Relaxed);
        m.aggregates_replicated.fetch_add(outcome.aggregates as u64, Ordering::Relaxed);
        m.records_skipped_replicas.fetch_add(outcome.skipped_replicas as u64, Ordering::Relaxed);
        m.records_refused.fetch_add(outcome.refused.len() as u64, Ordering::Relaxed);
        let dead = outcome.refused.iter().filter(|r| r.dead_lettered).count();
        m.records_dead_lettered.fetch_add(dead as u64, Ordering::Relaxed);
        let failed: usize = outcome.records - outcome.replicated - outcome.skipped_replicas - dead;
        m.records_failed.fetch_add(failed as u64, Ordering::Relaxed);
        if !source_active && outcome.replicated > 0 {
            m.records_forwarded_while_inactive.fetch_add(outcome.replicated as u64, Ordering::Relaxed);
            tracing::warn!(
                replicated = outcome.replicated,
                source = %self.source_region,
                "forwarded records produced while the source Region was not active (split brain)"
            );
        }
        if let Some(lag) = outcome.lag {
            let ms = lag.as_millis() as u64;
            m.last_lag_ms.store(ms, Ordering::Relaxed);
            m.max_lag_ms.fetch_max(ms, Ordering::Relaxed);
        }
    }

    /// Opens a reader on the source stream at this replicator's checkpoints (shards without one
    /// from their start; finished shards skipped).
    pub async fn open_source(&self, source: aws_sdk_kinesis::Client) -> Result<StreamReader> {
        let positions = self
            .checkpoints
            .shards(&self.stream, &self.source_region)
            .await?
            .into_iter()
            .filter_map(|p| {
                if p.finished {
                    Some((p.shard_id, ShardPosition::Finished))
                } else {
                    p.sequence_number.map(|s| (p.shard_id, ShardPosition::After(s)))
                }
            })
            .collect();
        StreamReader::open_with(source, &self.stream, StartPosition::Positions(positions), self.reader.clone()).await
    }

    /// Registers shards the reader listed for the first time (so the failover watermark covers
    /// them before they are read); a child inherits the smallest watermark of its parents.
    pub async fn register_new_shards(&self, reader: &mut StreamReader) -> Result<()> {
        let new = reader.take_new_shards();
        let result = self.register(&new).await;
        if result.is_err() {
            // Try again with the next poll.
            reader.requeue_new_shards(new);
        }
        result
    }

    pub(crate) async fn register(&self, shards: &[crate::reader::ShardInfo]) -> Result<()> {
        if shards.is_empty() {
            return Ok(());
        }
        let known: HashMap<String, crate::control::ShardProgress> = self
            .checkpoints
            .shards(&self.stream, &self.source_region)
            .await?
            .into_iter()
            .map(|p| (p.shard_id.clone(), p))
            .collect();
        for info in shards {
            if known.contains_key(&info.shard_id) {
                continue;
            }
            let parents: Vec<String> = info.parents().map(str::to_owned).collect();
            let inherited = if parents.is_empty() {
                None
            } else {
                let marks: Vec<Option<SystemTime>> =
                    parents.iter().map(|p| known.get(p).and_then(|k| k.watermark)).collect();
                marks.iter().all(Option::is_some).then(|| marks.iter().flatten().min().copied()).flatten()
            };
            self.checkpoints
                .register_shard(&self.stream, &self.source_region, &info.shard_id, &parents, inherited)
                .await?;
        }
        Ok(())
    }

    /// The polling loop: reads every shard of the source stream from the checkpoints (parents
    /// before children), replicates batch by batch, and commits a batch in the reader only after
    /// its checkpoints are written. Failed calls are retried with backoff; nothing read is lost
    /// or skipped. Returns when `shutdown` is set (after the batch in flight), or on a
    /// permanent error. `on_batch` sees every outcome with records.
    pub async fn run(
        &self,
        source: aws_sdk_kinesis::Client,
        shutdown: &AtomicBool,
        mut on_batch: impl FnMut(&BatchOutcome),
    ) -> Result<()> {
        let mut attempt = 0u32;
        let mut reader = loop {
            match self.open_source(source.clone()).await {
                Ok(r) => break r,
                Err(e) if e.is_retryable() && !shutdown.load(Ordering::Relaxed) => {
                    retry_later(&e, "opening the source stream", &self.reader, &mut attempt).await;
                }
                Err(e) => return Err(e),
            }
        };
        attempt = 0;
        while !shutdown.load(Ordering::Relaxed) {
            if let Err(e) = self.register_new_shards(&mut reader).await {
                retry_later(&e, "registering new shards", &self.reader, &mut attempt).await;
                continue;
            }
            let batch = reader.poll().await;
            for (shard, e) in &batch.errors {
                tracing::warn!(shard = %shard, error = %e, "reading the source stream failed (retried)");
            }
            match self.replicate(&batch).await {
                Ok(outcome) => {
                    attempt = 0;
                    reader.commit(&batch, |shard| outcome.advance(shard));
                    if !outcome.is_empty() {
                        on_batch(&outcome);
                    }
                    if let Some(e) = outcome.errors.iter().find(|e| !e.is_retryable()) {
                        tracing::error!(error = %e, "a shard cannot progress until this is fixed");
                    }
                }
                Err(e) if e.is_retryable() => retry_later(&e, "a replication step", &self.reader, &mut attempt).await,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Logs a transient failure of the polling loop and waits (exponential backoff) before the next
/// attempt.
async fn retry_later(e: &KinesisError, what: &str, cfg: &ReaderConfig, attempt: &mut u32) {
    tracing::warn!(error = %e, "replicator: {what} failed (transient); retrying");
    tokio::time::sleep(crate::retry::backoff(cfg.base_backoff, cfg.max_backoff, *attempt)).await;
    *attempt = attempt.saturating_add(1);
}

/// The minimum of the values pushed for the last [`WATERMARK_WINDOW`] records, an aggregate
/// counting as [`AGGREGATE_WEIGHT`] of them (a monotonic deque: O(1) amortized).
#[derive(Default)]
struct TrailingMin {
    /// (index of the last record slot a value covers, value), values increasing front to back.
    mins: VecDeque<(u64, SystemTime)>,
    pushed: u64,
    /// Arrival of the last record that was not pushed (a replica or a refused record).
    last_arrival: Option<SystemTime>,
}

impl TrailingMin {
    /// Pushes the commit time of a record counting as `slots` records (at least one).
    fn push(&mut self, t: SystemTime, slots: u64) {
        let weight = slots.max(1);
        while self.mins.back().is_some_and(|&(_, v)| v >= t) {
            self.mins.pop_back();
        }
        self.pushed += weight;
        self.mins.push_back((self.pushed - 1, t));
        while self.mins.front().is_some_and(|&(last, _)| last + (WATERMARK_WINDOW as u64) < self.pushed) {
            self.mins.pop_front();
        }
    }

    fn min(&self) -> Option<SystemTime> {
        self.mins.front().map(|&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn trailing_min_forgets_values_older_than_the_window() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let mut w = TrailingMin::default();
        assert_eq!(w.min(), None);
        w.push(t(10), 1);
        w.push(t(5), 1);
        w.push(t(20), 1);
        assert_eq!(w.min(), Some(t(5)));
        for i in 0..WATERMARK_WINDOW as u64 {
            w.push(t(100 + i), 1);
        }
        assert_eq!(w.min(), Some(t(100)), "5 and 20 are older than the window");
        // A forged far-future value among normal ones does not raise the minimum.
        w.push(t(1_000_000), 1);
        assert_eq!(w.min(), Some(t(101)));
    }

    #[test]
    fn the_last_two_aggregates_decide() {
        const AGG: u64 = AGGREGATE_WEIGHT as u64;
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let mut w = TrailingMin::default();
        w.push(t(10), AGG);
        w.push(t(70), AGG);
        assert_eq!(w.min(), Some(t(10)), "two aggregates fill the window: both count");
        w.push(t(80), AGG);
        assert_eq!(w.min(), Some(t(70)), "the first aggregate's records are all before 70");
        // A stray far-future aggregate does not raise it on its own.
        w.push(t(1_000_000), AGG);
        assert_eq!(w.min(), Some(t(80)));
        // Single records after it: an aggregate stays while any of its slots is in the window.
        for i in 0..AGG - 1 {
            w.push(t(200 + i), 1);
        }
        assert_eq!(w.min(), Some(t(80)), "one of 80's slots is still in the window");
        w.push(t(300), 1);
        assert_eq!(w.min(), Some(t(200)), "80's slots are out; 1,000,000 is not the minimum");
        // An aggregate older than the singles before it lowers the minimum, as any record does.
        w.push(t(150), AGG);
        assert_eq!(w.min(), Some(t(150)));
    }
}
