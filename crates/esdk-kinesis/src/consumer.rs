//! Decrypting consumer: expected encryption context, idempotent delivery by CDC identity across
//! restarts and failovers, per-key order, and failures sorted into poison (permanent) and
//! transient (retry).
//!
//! **Two phases.** [`Consumer::poll`] reads a batch and decrypts it; the application handles
//! [`ConsumeOutcome::delivered`]; only then [`Consumer::commit`] remembers what was delivered and
//! moves the group's checkpoint (DynamoDB, per shard) and the reader. If the application fails,
//! it does not commit and the next poll delivers the same records again.
//!
//! **Aggregates.** A record whose context marks it as a KPL aggregate
//! ([`EC_AGGREGATE`](crate::record::EC_AGGREGATE)) is split after it authenticated (MD5 trailer
//! and every index checked; a malformed aggregate is poison, never passed through) and its user
//! records are delivered with their own partition keys and `(sequence number, sub-sequence
//! number)`. A batch delivers at most [`Consumer::with_max_batch_records`] user records, so it
//! may stop inside an aggregate: the group's checkpoint then holds the sub-sequence number, and
//! the next batch (or a restarted consumer) resumes at the next user record, as the KCL does.
//! Streams that mix aggregated and single records decrypt alike.
//!
//! **Identity.** A record is recognised as delivered by its CDC identity, not its message id:
//! by default a digest of its partition key and its payload (a replay by a producer after a
//! failover re-encrypts the same change under a new message id, possibly in another aggregate,
//! with the same key and payload; two changes of a key with byte-identical payloads count as
//! one, which CDC payloads carrying their commit time or log position never are);
//! [`Consumer::with_identity`] takes the caller's own. The identities of the last user records
//! delivered from each shard are stored with the group's checkpoint, so a restarted or
//! failed-over consumer still recognises replays.
//!
//! **Per-key order.** Records are delivered in stream order. A record that fails transiently
//! (KMS throttling) holds back the later records of its partition key in the batch (for an
//! aggregate: of its outer key, which every user key of it shares), and the shard's checkpoint
//! stops before it, so they come again, in order, next time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use esdk::client::Client;
use esdk::cmm::MaterialsManager;
use esdk::context::EncryptionContext;
use esdk::error::Error;
use esdk::Backend;

use crate::aggregate::{deaggregate_all, AggregateError, UserRecord};
use crate::control::{ConsumerPosition, ControlTable};
use crate::reader::{Advance, Batch, ReaderConfig, ShardPosition, StartPosition, StreamReader};
use crate::record::{parse_commit_time, AGGREGATE_FORMAT, EC_AGGREGATE, EC_COMMIT_TIME};
use crate::{KinesisError, Result, SourceRecord};

/// Identities remembered in memory by default (about 5 MB).
pub const DEFAULT_DEDUP_WINDOW: usize = 100_000;
/// Identities stored with each shard's checkpoint by default (16 bytes each).
pub const DEFAULT_STORED_IDENTITIES: usize = 10_000;
/// User records delivered per batch at most, by default.
pub const DEFAULT_MAX_BATCH_RECORDS: usize = 10_000;

/// A decrypted record (a user record of an aggregate, or a whole record).
#[non_exhaustive]
pub struct DeliveredRecord {
    /// Source shard.
    pub shard_id: String,
    /// Sequence number of the Kinesis record.
    pub sequence_number: String,
    /// Position in its aggregate (`None`: not aggregated).
    pub sub_sequence: Option<u64>,
    /// Partition key (the user record's own, for aggregates).
    pub partition_key: String,
    /// ESDK message id.
    pub message_id: Vec<u8>,
    /// The payload: zeroized when the last clone of it is dropped (for an aggregate, when its
    /// last user record's is).
    pub plaintext: Bytes,
    /// The authenticated encryption context.
    pub encryption_context: Arc<EncryptionContext>,
    /// The commit time in the encryption context (rounded down to a window; for an aggregate a
    /// lower bound of its records').
    pub commit_time: Option<SystemTime>,
    /// The record's CDC identity digest.
    pub identity: [u8; 16],
}

impl fmt::Debug for DeliveredRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveredRecord")
            .field("shard_id", &self.shard_id)
            .field("sequence_number", &self.sequence_number)
            .field("sub_sequence", &self.sub_sequence)
            .field("partition_key", &self.partition_key)
            .field("plaintext_len", &self.plaintext.len())
            .field("encryption_context", &self.encryption_context)
            .finish()
    }
}

/// A record that was not delivered.
#[derive(Debug)]
#[non_exhaustive]
pub struct RecordFailure {
    /// Source shard.
    pub shard_id: String,
    /// Sequence number.
    pub sequence_number: String,
    /// Partition key (the Kinesis record's).
    pub partition_key: String,
    /// Why: decryption, the expected context, or a malformed aggregate.
    pub error: KinesisError,
}

/// What one batch produced. Every input record is in exactly one list, or was not reached
/// (the batch's user-record limit).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ConsumeOutcome {
    /// Decrypted records not delivered before, in stream order.
    pub delivered: Vec<DeliveredRecord>,
    /// `(shard, sequence number, sub-sequence number)` of records whose identity was already
    /// delivered (replicator retries, producer replays after a failover); dropped.
    pub duplicates: Vec<(String, String, Option<u64>)>,
    /// Permanent failures (tampered, malformed, wrong key, not allow-listed, wrong context, a
    /// malformed aggregate): retrying cannot help; send them to a dead-letter destination.
    /// Checkpointed past.
    pub poison: Vec<RecordFailure>,
    /// Transient failures (KMS throttling, timeouts): the shard resumes at the first one.
    pub transient: Vec<RecordFailure>,
    /// `(shard, sequence number)` of records held back because an earlier record of their
    /// partition key failed transiently; they come again.
    pub held_back: Vec<(String, String)>,
    advance: HashMap<String, Advance>,
    /// Per shard stopped inside an aggregate: its sequence number and the last sub-sequence
    /// number delivered.
    inside: HashMap<String, (String, u64)>,
}

impl ConsumeOutcome {
    /// How far the reader may move in `shard_id` once the application has the delivered records.
    pub fn advance(&self, shard_id: &str) -> Advance {
        self.advance.get(shard_id).cloned().unwrap_or(Advance::All)
    }
}

/// Identities already delivered: a bounded set, oldest forgotten first.
struct Seen {
    set: HashSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
    capacity: usize,
}

impl Seen {
    fn contains(&self, id: &[u8; 16]) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: [u8; 16]) {
        if self.capacity == 0 || !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

type IdentityFn = dyn Fn(&DeliveredRecord) -> Vec<u8> + Send + Sync;

/// The consumer group a consumer checkpoints in.
#[derive(Clone, Debug)]
struct Group {
    table: ControlTable,
    name: String,
    stream: String,
    region: String,
}

/// Decrypts records from one stream.
pub struct Consumer {
    client: Client,
    cmm: Arc<dyn MaterialsManager>,
    expected: EncryptionContext,
    identity: Option<Box<IdentityFn>>,
    seen: Mutex<Seen>,
    /// Per shard, the identities delivered last (stored with its checkpoint).
    recent: Mutex<HashMap<String, VecDeque<[u8; 16]>>>,
    /// Per shard, an aggregate the group stopped inside: its sequence number and the last
    /// sub-sequence number delivered.
    inside: Mutex<HashMap<String, (String, u64)>>,
    stored_identities: usize,
    max_batch_records: usize,
    group: Option<Group>,
    reader: ReaderConfig,
}

/// Decrypted, before de-duplication: a whole record or the user records of an aggregate.
enum Opened {
    Single(DeliveredRecord),
    Aggregate(Vec<DeliveredRecord>),
}

/// Records decrypted, then split, together (enough aggregates to fill the MD5 lanes).
const OPEN_CHUNK: usize = 16;

/// A record of a batch after decryption: held back behind a transient failure of its key, or
/// opened (or failed).
enum Prepared {
    Held,
    Opened(Result<Opened, KinesisError>),
}

/// A decrypted record before it is split.
struct Decrypted {
    plaintext: Bytes,
    commit_time: Option<SystemTime>,
    aggregated: bool,
    message_id: Vec<u8>,
    context: Arc<EncryptionContext>,
}

impl Consumer {
    /// A consumer decrypting with `cmm` (e.g. a caching CMM over an MRK-aware strict keyring that
    /// lists only this Region's key ARN) under `client`'s policy and limits.
    pub fn new(client: Client, cmm: Arc<dyn MaterialsManager>) -> Self {
        Self {
            client,
            cmm,
            expected: EncryptionContext::new(),
            identity: None,
            seen: Mutex::new(Seen { set: HashSet::new(), order: VecDeque::new(), capacity: DEFAULT_DEDUP_WINDOW }),
            recent: Mutex::new(HashMap::new()),
            inside: Mutex::new(HashMap::new()),
            stored_identities: DEFAULT_STORED_IDENTITIES,
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
            group: None,
            reader: ReaderConfig::default(),
        }
    }

    /// Pairs every record's encryption context must contain (e.g. the logical stream name).
    pub fn expect_context(mut self, expected: EncryptionContext) -> Self {
        self.expected = expected;
        self
    }

    /// How many identities to remember in memory (0 disables de-duplication).
    pub fn with_dedup_window(mut self, capacity: usize) -> Self {
        self.seen = Mutex::new(Seen { set: HashSet::new(), order: VecDeque::new(), capacity });
        self
    }

    /// The CDC identity of a record, as bytes (digested): two records with the same identity are
    /// one change. Default: partition key and plaintext.
    pub fn with_identity(mut self, identity: impl Fn(&DeliveredRecord) -> Vec<u8> + Send + Sync + 'static) -> Self {
        self.identity = Some(Box::new(identity));
        self
    }

    /// Checkpoints in the consumer group `name` of `table`, for `stream` in `region`: positions
    /// per shard and the identities delivered last (at most `stored_identities` per shard).
    pub fn with_group(mut self, table: ControlTable, name: &str, stream: &str, region: &str) -> Self {
        self.group = Some(Group { table, name: name.to_owned(), stream: stream.to_owned(), region: region.to_owned() });
        self
    }

    /// Identities stored with each shard's checkpoint (default 10,000; 16 bytes each).
    pub fn with_stored_identities(mut self, n: usize) -> Self {
        self.stored_identities = n;
        self
    }

    /// User records delivered per batch at most (default 10,000): bounds the memory a batch of
    /// large aggregates takes; a batch may stop inside an aggregate.
    pub fn with_max_batch_records(mut self, n: usize) -> Self {
        self.max_batch_records = n.max(1);
        self
    }

    /// Pacing of the reader [`Self::open`] opens.
    pub fn with_reader_config(mut self, reader: ReaderConfig) -> Self {
        self.reader = reader;
        self
    }

    /// Opens a reader of the group's stream at the group's checkpoints (shards without one from
    /// their start; inside an aggregate at its record), and loads the identities delivered last.
    pub async fn open(&self, kinesis: aws_sdk_kinesis::Client) -> Result<StreamReader> {
        let Some(group) = &self.group else {
            return Err(KinesisError::InvalidConfig(
                "Consumer::open needs a consumer group (with_group); read records yourself and call process".into(),
            ));
        };
        let stored = group.table.consumer_positions(&group.name, &group.stream, &group.region).await?;
        let mut positions = HashMap::new();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let mut inside = self.inside.lock().unwrap_or_else(|p| p.into_inner());
            for (shard, p) in stored {
                for id in &p.identities {
                    seen.insert(*id);
                }
                recent.insert(shard.clone(), p.identities.iter().copied().collect());
                match (p.finished, p.sequence_number, p.sub_sequence) {
                    (true, _, _) => {
                        positions.insert(shard, ShardPosition::Finished);
                    }
                    (false, Some(seq), Some(sub)) => {
                        inside.insert(shard.clone(), (seq.clone(), sub));
                        positions.insert(shard, ShardPosition::At(seq));
                    }
                    (false, Some(seq), None) => {
                        positions.insert(shard, ShardPosition::After(seq));
                    }
                    (false, None, _) => {}
                }
            }
        }
        StreamReader::open_with(kinesis, &group.stream, StartPosition::Positions(positions), self.reader.clone()).await
    }

    fn check_context(&self, actual: &EncryptionContext) -> Result<(), Error> {
        for (k, v) in self.expected.iter() {
            match actual.get(k) {
                Some(a) if a == v => {}
                Some(a) => {
                    return Err(Error::EncryptionContextMismatch(format!(
                        "record has {k:?} = {a:?}, this consumer expects {v:?}"
                    )))
                }
                None => {
                    return Err(Error::EncryptionContextMismatch(format!(
                        "record lacks {k:?}, which this consumer expects to be {v:?}"
                    )))
                }
            }
        }
        Ok(())
    }

    fn identity_of(&self, record: &DeliveredRecord) -> [u8; 16] {
        let digest = match &self.identity {
            Some(f) => Backend::default().sha256(&[&f(record)]),
            None => Backend::default().sha256(&[record.partition_key.as_bytes(), &[0], &record.plaintext]),
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        id
    }

    /// Decrypts one record and checks its context.
    async fn decrypt_record(&self, r: &SourceRecord) -> Result<Decrypted, KinesisError> {
        let d = self.client.decrypt(self.cmm.as_ref(), &r.data, None).await?;
        self.check_context(&d.encryption_context)?;
        Ok(Decrypted {
            plaintext: Bytes::from_owner(d.plaintext),
            commit_time: d.encryption_context.get(EC_COMMIT_TIME).and_then(|t| parse_commit_time(t).ok()),
            aggregated: d.encryption_context.get(EC_AGGREGATE) == Some(AGGREGATE_FORMAT),
            message_id: d.header.message_id().to_vec(),
            context: Arc::new(d.encryption_context),
        })
    }

    /// The delivered records of a decrypted record: itself, or the user records of its
    /// aggregate (`users`, split beforehand).
    fn delivered(
        &self,
        r: &SourceRecord,
        d: Decrypted,
        users: Option<Result<Vec<UserRecord>, AggregateError>>,
    ) -> Result<Opened, KinesisError> {
        let record = |sub: Option<u64>, key: String, plaintext: Bytes| {
            let mut out = DeliveredRecord {
                shard_id: r.shard_id.clone(),
                sequence_number: r.sequence_number.clone(),
                sub_sequence: sub,
                partition_key: key,
                message_id: d.message_id.clone(),
                plaintext,
                encryption_context: d.context.clone(),
                commit_time: d.commit_time,
                identity: [0; 16],
            };
            out.identity = self.identity_of(&out);
            out
        };
        match users {
            None => Ok(Opened::Single(record(None, r.partition_key.clone(), d.plaintext.clone()))),
            Some(users) => Ok(Opened::Aggregate(
                users?.into_iter().enumerate().map(|(i, u)| record(Some(i as u64), u.partition_key, u.data)).collect(),
            )),
        }
    }

    /// Decrypts `records` (a chunk of a batch) in order, except those of a key a transient
    /// failure blocked (before, in `blocked`, or in the chunk), then splits the aggregates among
    /// them together (their MD5s side by side).
    async fn open_chunk<'r>(&self, records: &'r [SourceRecord], blocked: &HashSet<&str>) -> Vec<Prepared> {
        let mut blocked_here: HashSet<&'r str> = HashSet::new();
        let mut decrypted = Vec::with_capacity(records.len());
        for r in records {
            let key = r.partition_key.as_str();
            if blocked.contains(key) || blocked_here.contains(key) {
                decrypted.push(None);
                continue;
            }
            let d = self.decrypt_record(r).await;
            if matches!(&d, Err(e) if e.is_retryable()) {
                blocked_here.insert(key);
            }
            decrypted.push(Some(d));
        }
        let aggregates: Vec<Bytes> =
            decrypted.iter().flatten().flatten().filter(|d| d.aggregated).map(|d| d.plaintext.clone()).collect();
        let mut split = deaggregate_all(&aggregates).into_iter();
        drop(aggregates);
        records
            .iter()
            .zip(decrypted)
            .map(|(r, d)| match d {
                None => Prepared::Held,
                Some(Err(e)) => Prepared::Opened(Err(e)),
                Some(Ok(d)) => {
                    let users =
                        if d.aggregated { Some(split.next().unwrap_or(Err(AggregateError::Empty))) } else { None };
                    Prepared::Opened(self.delivered(r, d, users))
                }
            })
            .collect()
    }

    /// Decrypts a batch, without remembering anything: records whose identity was delivered
    /// (and committed or acknowledged) before are duplicates; a transient failure holds back the
    /// later records of its key. Call [`Self::acknowledge`] (or [`Self::commit`]) once the
    /// application has the delivered records.
    pub async fn process(&self, records: &[SourceRecord]) -> ConsumeOutcome {
        let mut out = ConsumeOutcome::default();
        let mut blocked_keys: HashSet<&str> = HashSet::new();
        let mut batch_ids: HashSet<[u8; 16]> = HashSet::new();
        let mut last_ok: HashMap<&str, &str> = HashMap::new();
        let mut stopped: HashSet<&str> = HashSet::new();
        let mut full = false;
        let resume = self.inside.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Records are decrypted and split a chunk at a time, as the loop reaches them: once the
        // batch's user-record limit is reached nothing more is opened (at most the rest of a
        // chunk was, in vain), so memory and work stay bounded by the limit.
        let mut prepared: Vec<Option<Prepared>> = (0..records.len()).map(|_| None).collect();
        let mut opened_to = 0;
        for (i, r) in records.iter().enumerate() {
            let shard = r.shard_id.as_str();
            if full {
                // Past the batch's user-record limit: read again next time.
                stopped.insert(shard);
                continue;
            }
            if blocked_keys.contains(r.partition_key.as_str()) {
                out.held_back.push((r.shard_id.clone(), r.sequence_number.clone()));
                stopped.insert(shard);
                continue;
            }
            if i >= opened_to {
                let end = records.len().min(i + OPEN_CHUNK);
                let chunk = self.open_chunk(&records[i..end], &blocked_keys).await;
                for (slot, p) in prepared[i..end].iter_mut().zip(chunk) {
                    *slot = Some(p);
                }
                opened_to = end;
            }
            let Some(Prepared::Opened(opened)) = prepared[i].take() else {
                // Held back in `open_chunk`: its key is blocked here too.
                out.held_back.push((r.shard_id.clone(), r.sequence_number.clone()));
                stopped.insert(shard);
                continue;
            };
            let opened = match opened {
                Ok(o) => o,
                Err(error) => {
                    let failure = RecordFailure {
                        shard_id: r.shard_id.clone(),
                        sequence_number: r.sequence_number.clone(),
                        partition_key: r.partition_key.clone(),
                        error,
                    };
                    if failure.error.is_retryable() {
                        blocked_keys.insert(r.partition_key.as_str());
                        stopped.insert(shard);
                        out.transient.push(failure);
                        continue;
                    }
                    out.poison.push(failure);
                    if !stopped.contains(shard) {
                        last_ok.insert(shard, r.sequence_number.as_str());
                    }
                    continue;
                }
            };
            let users = match opened {
                Opened::Single(d) => vec![d],
                Opened::Aggregate(users) => users,
            };
            // Resuming inside this aggregate: its first user records were delivered already.
            let skip = match resume.get(shard) {
                Some((seq, sub)) if *seq == r.sequence_number => *sub + 1,
                _ => 0,
            };
            let mut last_sub = None;
            let mut cut = false;
            for d in users.into_iter().skip(skip as usize) {
                if out.delivered.len() >= self.max_batch_records {
                    cut = true;
                    break;
                }
                let dup = self.seen.lock().unwrap_or_else(|p| p.into_inner()).contains(&d.identity)
                    || !batch_ids.insert(d.identity);
                last_sub = d.sub_sequence.or(last_sub);
                if dup {
                    out.duplicates.push((d.shard_id.clone(), d.sequence_number.clone(), d.sub_sequence));
                    continue;
                }
                out.delivered.push(d);
            }
            if cut {
                // The batch's user-record limit: stop inside this record if part of it was
                // taken, before it otherwise; the shard (and the rest) is read again.
                full = true;
                let advance = match last_sub {
                    Some(sub) => {
                        out.inside.insert(shard.to_owned(), (r.sequence_number.clone(), sub));
                        Advance::Before(r.sequence_number.clone())
                    }
                    None => last_ok.get(shard).map_or(Advance::Nothing, |s| Advance::UpTo((*s).to_owned())),
                };
                out.advance.insert(shard.to_owned(), advance);
                stopped.insert(shard);
                continue;
            }
            if !stopped.contains(shard) {
                last_ok.insert(shard, r.sequence_number.as_str());
            }
        }
        for shard in stopped {
            out.advance.entry(shard.to_owned()).or_insert_with(|| match last_ok.get(shard) {
                Some(seq) => Advance::UpTo((*seq).to_owned()),
                None => Advance::Nothing,
            });
        }
        out
    }

    /// Remembers the delivered records of `outcome` (in memory), so their replays are
    /// recognised, and where a batch stopped inside an aggregate.
    pub fn acknowledge(&self, outcome: &ConsumeOutcome) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for d in &outcome.delivered {
            seen.insert(d.identity);
            let ids = recent.entry(d.shard_id.clone()).or_default();
            ids.push_back(d.identity);
            while ids.len() > self.stored_identities {
                ids.pop_front();
            }
        }
        let mut inside = self.inside.lock().unwrap_or_else(|p| p.into_inner());
        let moved: HashSet<&str> = outcome.delivered.iter().map(|d| d.shard_id.as_str()).collect();
        for shard in moved.into_iter().chain(outcome.advance.keys().map(String::as_str)) {
            match (outcome.advance(shard), outcome.inside.get(shard)) {
                (Advance::Before(_), Some(at)) => {
                    inside.insert(shard.to_owned(), at.clone());
                }
                (Advance::Nothing, _) => {}
                _ => {
                    inside.remove(shard);
                }
            }
        }
    }

    /// Reads and decrypts the next batch of the group's stream (see [`Self::open`]).
    pub async fn poll(&self, reader: &mut StreamReader) -> (Batch, ConsumeOutcome) {
        let batch = reader.poll().await;
        for (shard, e) in &batch.errors {
            tracing::warn!(shard = %shard, error = %e, "consumer: reading the stream failed (retried)");
        }
        let outcome = self.process(&batch.records).await;
        (batch, outcome)
    }

    /// After the application handled `outcome.delivered`: remembers them and stores the group's
    /// position of every shard of the batch (with the identities delivered last), then moves
    /// the reader. If storing fails, the reader does not move (the records come again, and the
    /// in-memory identities recognise them).
    pub async fn commit(&self, reader: &mut StreamReader, batch: &Batch, outcome: &ConsumeOutcome) -> Result<()> {
        self.acknowledge(outcome);
        if let Some(group) = &self.group {
            let ends: HashMap<&str, Option<&str>> = batch.shards_at_end().collect();
            let mut last: HashMap<&str, &str> = HashMap::new();
            for r in &batch.records {
                last.insert(r.shard_id.as_str(), r.sequence_number.as_str());
            }
            let shards: HashSet<&str> = last.keys().copied().chain(ends.keys().copied()).collect();
            for shard in shards {
                let (seq, sub, finished) = match outcome.advance(shard) {
                    Advance::Nothing => continue,
                    Advance::UpTo(seq) => (seq, None, false),
                    Advance::Before(seq) => (seq, outcome.inside.get(shard).map(|(_, sub)| *sub), false),
                    Advance::All => {
                        let end = ends.get(shard);
                        let seq = last.get(shard).copied().or(end.copied().flatten()).or(end.map(|_| "0"));
                        let Some(seq) = seq else { continue };
                        (seq.to_owned(), None, end.is_some())
                    }
                };
                let identities: Vec<[u8; 16]> = self
                    .recent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(shard)
                    .map(|q| q.iter().copied().collect())
                    .unwrap_or_default();
                let position = ConsumerPosition { sequence_number: Some(seq), sub_sequence: sub, finished, identities };
                group
                    .table
                    .write_consumer_position(&group.name, &group.stream, &group.region, shard, &position)
                    .await?;
            }
        }
        reader.commit(batch, |shard| outcome.advance(shard));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_identities_forget_the_oldest() {
        let mut s = Seen { set: HashSet::new(), order: VecDeque::new(), capacity: 2 };
        s.insert([1; 16]);
        s.insert([1; 16]);
        s.insert([2; 16]);
        assert!(s.contains(&[1; 16]) && s.contains(&[2; 16]));
        s.insert([3; 16]);
        assert!(!s.contains(&[1; 16]), "the oldest was forgotten");
        let mut off = Seen { set: HashSet::new(), order: VecDeque::new(), capacity: 0 };
        off.insert([1; 16]);
        assert!(!off.contains(&[1; 16]));
    }
}
