//! Crypto-blind cross-Region replicator: forwards record bytes unchanged, reading only public
//! header fields (origin Region, commit time, EDK key ARNs). Needs no KMS permission.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::control::{Checkpoint, CheckpointWrite, ControlTable};
use crate::put::{put_ordered, EntryOutcome, PutConfig};
use crate::reader::{StartPosition, StreamReader};
use crate::record::RecordHeader;
use crate::source::seq_cmp;
use crate::{KinesisError, Result, SourceRecord};
use esdk::keyring::kms::{mrk_match, KeyIdentifier};

/// Counters a caller can read (monotonic, except the lag gauge).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReplicatorMetrics {
    /// Records forwarded to the destination.
    pub records_replicated: AtomicU64,
    /// Records skipped because they came from the destination Region (loop prevention).
    pub records_skipped_foreign: AtomicU64,
    /// Records refused (unparsable header, EDK key not allow-listed).
    pub records_refused: AtomicU64,
    /// Batches skipped because this Region is not active.
    pub batches_skipped_inactive: AtomicU64,
    /// Batches handled.
    pub batches: AtomicU64,
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
}

/// What one batch did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// The control table says another Region is active: nothing was forwarded or checkpointed.
    pub skipped_inactive: bool,
    /// Records forwarded.
    pub replicated: usize,
    /// Records skipped because they originated in another Region (already replicas).
    pub skipped_foreign: usize,
    /// Records refused (not forwarded, not retried).
    pub refused: Vec<RefusedRecord>,
    /// Source sequence numbers (with shard) that could not be forwarded; the batch must resume at
    /// the first of each shard. Later records of the same shard are included: nothing after a
    /// failure is checkpointed.
    pub failed: Vec<(String, String)>,
    /// Checkpoints written (or found stale), per shard.
    pub checkpoints: Vec<(Checkpoint, CheckpointWrite)>,
    /// Lag of the last forwarded record (source arrival → destination acknowledgement).
    pub lag: Option<Duration>,
}

/// Forwards records from the stream in `source_region` to the same stream in the destination.
pub struct Replicator {
    source_region: String,
    stream: String,
    destination: aws_sdk_kinesis::Client,
    flag: ControlTable,
    checkpoints: ControlTable,
    allowed_keys: Option<Vec<KeyIdentifier>>,
    put: PutConfig,
    metrics: Arc<ReplicatorMetrics>,
}

impl Replicator {
    /// `destination` is a Kinesis client for the destination Region; `flag` holds the
    /// active-Region flag (read before every batch) and `checkpoints` receives checkpoints
    /// (use the destination Region's table).
    pub fn new(
        source_region: &str,
        stream: &str,
        destination: aws_sdk_kinesis::Client,
        flag: ControlTable,
        checkpoints: ControlTable,
    ) -> Self {
        Self {
            source_region: source_region.to_owned(),
            stream: stream.to_owned(),
            destination,
            flag,
            checkpoints,
            allowed_keys: None,
            put: PutConfig::default(),
            metrics: Arc::default(),
        }
    }

    /// Only forward records whose every `aws-kms` EDK is wrapped under one of these keys (MRK
    /// replicas match each other); records with other or non-KMS EDKs are refused. Key ARNs only.
    pub fn with_allowed_keys<S: AsRef<str>>(mut self, keys: impl IntoIterator<Item = S>) -> esdk::Result<Self> {
        let mut parsed = Vec::new();
        for k in keys {
            let id = KeyIdentifier::parse(k.as_ref())?;
            if id.key_arn().is_none() {
                return Err(esdk::Error::InvalidConfig(format!(
                    "allow-list entry {:?} is not a key ARN; aliases and bare key ids cannot be matched against EDKs",
                    k.as_ref()
                )));
            }
            parsed.push(id);
        }
        self.allowed_keys = Some(parsed);
        Ok(self)
    }

    /// Batching and retry settings for the destination `PutRecords`.
    pub fn with_put_config(mut self, put: PutConfig) -> Result<Self> {
        put.validate()?;
        self.put = put;
        Ok(self)
    }

    /// The counters.
    pub fn metrics(&self) -> Arc<ReplicatorMetrics> {
        self.metrics.clone()
    }

    /// The logical stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Why a record must not be forwarded, if so (`Ok(false)` = skip as a foreign replica).
    fn screen(&self, record: &SourceRecord) -> std::result::Result<(bool, Option<SystemTime>), String> {
        let header = RecordHeader::parse(&record.data).map_err(|e| format!("not an ESDK message: {e}"))?;
        if header.origin_region().is_some_and(|o| o != self.source_region) {
            return Ok((false, None));
        }
        if let Some(allowed) = &self.allowed_keys {
            let edks = header.header().encrypted_data_keys();
            for (i, edk) in edks.iter().enumerate() {
                let info = String::from_utf8_lossy(&edk.provider_info);
                let ok = edk.provider_id == "aws-kms"
                    && KeyIdentifier::parse(&info).is_ok_and(|id| allowed.iter().any(|a| mrk_match(a, &id)));
                if !ok {
                    let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
                    return Err(format!(
                        "EDK #{i} ({}/{info}) is not wrapped under an allow-listed key; allowed: [{}]",
                        edk.provider_id,
                        list.join(", ")
                    ));
                }
            }
        }
        let commit_time = header.commit_time().map_err(|e| e.to_string())?;
        Ok((true, commit_time))
    }

    /// Replicates one batch (records of one or more shards, each shard's in sequence order):
    /// checks the active-Region flag, screens headers, forwards in order with the same partition
    /// keys, then checkpoints each shard up to its last record before any failure.
    pub async fn replicate_batch(&self, records: &[SourceRecord]) -> Result<BatchOutcome> {
        let mut outcome = BatchOutcome::default();
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        if self.flag.active_region().await?.as_deref() != Some(self.source_region.as_str()) {
            self.metrics.batches_skipped_inactive.fetch_add(1, Ordering::Relaxed);
            outcome.skipped_inactive = true;
            return Ok(outcome);
        }
        let mut forward: Vec<usize> = Vec::new();
        let mut commit_times: Vec<Option<SystemTime>> = vec![None; records.len()];
        for (i, r) in records.iter().enumerate() {
            match self.screen(r) {
                Ok((true, t)) => {
                    commit_times[i] = t;
                    forward.push(i);
                }
                Ok((false, _)) => outcome.skipped_foreign += 1,
                Err(reason) => outcome.refused.push(RefusedRecord {
                    shard_id: r.shard_id.clone(),
                    sequence_number: r.sequence_number.clone(),
                    reason,
                }),
            }
        }
        let entries: Vec<(&str, &bytes::Bytes)> =
            forward.iter().map(|&i| (records[i].partition_key.as_str(), &records[i].data)).collect();
        let (outcomes, _) = put_ordered(&self.destination, &self.stream, &entries, &self.put).await;
        let acked = SystemTime::now();
        let mut failed = vec![false; records.len()];
        for (&i, o) in forward.iter().zip(&outcomes) {
            match o {
                EntryOutcome::Put { .. } => {
                    outcome.replicated += 1;
                    if let Some(lag) = records[i].arrival.and_then(|a| acked.duration_since(a).ok()) {
                        outcome.lag = Some(lag);
                    }
                }
                EntryOutcome::Failed(_) => failed[i] = true,
            }
        }
        // One pass per shard: checkpoint the last record before the first failure (with the newest
        // commit time up to it); report the failure and everything after it in that shard.
        let mut failed_shards: HashSet<&str> = HashSet::new();
        let mut last_ok: HashMap<&str, (usize, Option<SystemTime>)> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let shard = r.shard_id.as_str();
            if failed[i] || failed_shards.contains(shard) {
                failed_shards.insert(shard);
                outcome.failed.push((r.shard_id.clone(), r.sequence_number.clone()));
                continue;
            }
            let entry = last_ok.entry(shard).or_insert((i, None));
            if seq_cmp(&records[entry.0].sequence_number, &r.sequence_number).is_lt() {
                entry.0 = i;
            }
            entry.1 = entry.1.max(commit_times[i]);
        }
        let mut shards: Vec<(&str, (usize, Option<SystemTime>))> = last_ok.into_iter().collect();
        shards.sort_by_key(|(shard, _)| *shard);
        for (shard, (i, commit_time)) in shards {
            let cp = Checkpoint {
                stream: self.stream.clone(),
                source_region: self.source_region.clone(),
                shard_id: shard.to_owned(),
                sequence_number: records[i].sequence_number.clone(),
                commit_time,
            };
            let written = self.checkpoints.write_checkpoint(&cp).await?;
            outcome.checkpoints.push((cp, written));
        }
        let m = &self.metrics;
        m.records_replicated.fetch_add(outcome.replicated as u64, Ordering::Relaxed);
        m.records_skipped_foreign.fetch_add(outcome.skipped_foreign as u64, Ordering::Relaxed);
        m.records_refused.fetch_add(outcome.refused.len() as u64, Ordering::Relaxed);
        if let Some(lag) = outcome.lag {
            let ms = lag.as_millis() as u64;
            m.last_lag_ms.store(ms, Ordering::Relaxed);
            m.max_lag_ms.fetch_max(ms, Ordering::Relaxed);
        }
        for r in &outcome.refused {
            tracing::warn!(shard = %r.shard_id, sequence_number = %r.sequence_number, reason = %r.reason, "record not replicated");
        }
        Ok(outcome)
    }

    /// Opens a reader on the source stream positioned after this replicator's checkpoints.
    pub async fn open_source(&self, source: aws_sdk_kinesis::Client) -> Result<StreamReader> {
        let after = self
            .checkpoints
            .checkpoints(&self.stream, &self.source_region)
            .await?
            .into_iter()
            .map(|c| (c.shard_id, c.sequence_number))
            .collect();
        StreamReader::open(source, &self.stream, StartPosition::After(after)).await
    }

    /// The polling loop: reads every shard of the source stream from the checkpoints, replicates
    /// batch by batch, retries transient failures (throttling, an unreachable Region, DynamoDB
    /// errors) with backoff, and returns when `shutdown` is set and a poll finds nothing new, or on
    /// a permanent error. `on_batch` sees every non-empty outcome (for progress and metrics).
    pub async fn run(
        &self,
        source: aws_sdk_kinesis::Client,
        shutdown: &std::sync::atomic::AtomicBool,
        idle_wait: Duration,
        mut on_batch: impl FnMut(&BatchOutcome),
    ) -> Result<()> {
        let mut attempt = 0u32;
        let mut reader = loop {
            match self.open_source(source.clone()).await {
                Ok(r) => break r,
                Err(e) if e.is_retryable() && !shutdown.load(Ordering::Relaxed) => {
                    retry_later(&e, "opening the source stream", idle_wait, &mut attempt).await;
                }
                Err(e) => return Err(e),
            }
        };
        attempt = 0;
        loop {
            match self.poll_once(&mut reader).await {
                Ok(o) if o.replicated == 0 && o.failed.is_empty() && o.skipped_foreign == 0 && o.refused.is_empty() => {
                    attempt = 0;
                    if shutdown.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    tokio::time::sleep(idle_wait).await;
                }
                Ok(o) => {
                    attempt = 0;
                    on_batch(&o);
                }
                Err(e) if e.is_retryable() && !shutdown.load(Ordering::Relaxed) => {
                    retry_later(&e, "a replication step", idle_wait, &mut attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One step of the polling loop: reads one batch from every shard, replicates it, and
    /// rewinds the reader to the first failed record of each shard so the next step retries it
    /// (the whole batch when the step fails, e.g. the control table is unreachable).
    pub async fn poll_once(&self, reader: &mut StreamReader) -> Result<BatchOutcome> {
        let records = reader.poll().await?;
        if records.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let outcome = match self.replicate_batch(&records).await {
            Ok(o) => o,
            Err(e) => {
                // Nothing of this batch may be skipped: read it again next time (records already
                // forwarded come again as duplicates, which consumers drop by message id).
                let positions: Vec<(&str, &str)> =
                    records.iter().map(|r| (r.shard_id.as_str(), r.sequence_number.as_str())).collect();
                reader.rewind_to_first(&positions).await?;
                return Err(e);
            }
        };
        let positions: Vec<(&str, &str)> = outcome.failed.iter().map(|(s, q)| (s.as_str(), q.as_str())).collect();
        reader.rewind_to_first(&positions).await?;
        Ok(outcome)
    }
}

/// Logs a transient failure of the polling loop and waits (exponential backoff from `base`, at
/// most 20 s) before the next attempt.
async fn retry_later(e: &KinesisError, what: &str, base: Duration, attempt: &mut u32) {
    tracing::warn!(error = %e, "replicator: {what} failed (transient); retrying");
    tokio::time::sleep(crate::retry::backoff(base, Duration::from_secs(20), *attempt)).await;
    *attempt += 1;
}
