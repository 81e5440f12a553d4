//! The aggregating producer: many user records per ESDK message, in the KPL aggregation format.
//!
//! **Buckets, not shards.** User records are grouped by the bucket of their partition key (its
//! MD5, as Kinesis hashes it, scaled to [`Aggregation::buckets`] equal ranges of the hash-key
//! space), and every aggregate of a bucket is put under that bucket's one outer partition key
//! (a key whose own hash falls in the bucket's range). So every record of a partition key
//! travels under the same outer key for the life of the stream: at the source and, because the
//! replicator keeps partition keys, at the destination, whatever either stream's shard map is
//! and however it is resharded. Grouping by the source's shards instead (as the KPL does) would
//! send a key's records under different outer keys before and after a split, which the
//! destination may place in shards it reads in parallel. With shards that split the hash space
//! evenly (the default), a bucket's outer key lands in the shard its user keys hash to.
//!
//! **Order and size.** An aggregate is flushed when the next record would not fit the stream's
//! record limit (exact: the aggregate's length is predicted from the header the codec writes,
//! outer key counted), at [`Aggregation::max_records`], when the next record's commit window is
//! later (with [`CommitTimeInContext::Window`]; a record of an earlier window joins, and the
//! context shows the earliest), and at the end of each [`AggregatingProducer::put`]. A put's
//! aggregates are sent window by window, in the order of the windows their contexts show (each
//! bucket's in its own order): a window's aggregates only once the earlier windows' are all in
//! the stream, and none after an earlier one failed for good (or could not be encrypted:
//! [`crate::KinesisError::HeldBack`]), so their records can be put again in order. With exact
//! commit times the same holds with a new rank wherever a bucket repeats. So a shard's
//! aggregates carry non-decreasing commit times, as single records do, and the replicator's
//! failover watermark over the last two of them ([`crate::AGGREGATE_WEIGHT`]) bounds the ones
//! after, for a producer that puts in commit order one `put` at a time (with windowed times,
//! retries within a rank reorder only equal windows; with exact times, only the failover margin
//! covers a retried aggregate landing after a later one of another bucket). The cost: a put
//! spanning W windows takes at least W rounds of `PutRecords`, and ranks span shards (one
//! shard's throttling delays the later windows of all). A record too large to share an
//! aggregate is sent in one of its own, one too large even alone is refused before anything is
//! sent, with the largest payload that fits, and one whose commit time the context cannot carry
//! (before 1970 or after 9999) is refused alone.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::aggregate::{bucket_of, bucket_partition_key, AggregateBuilder, FIXED_OVERHEAD};
use crate::producer::{FailedRecord, Producer, PutRecordResult, PutReport};
use crate::put::{put_ordered, EntryOutcome, SendOrder};
use crate::record::{CommitTimeInContext, EncryptedRecord};
use crate::KinesisError;

/// How an [`AggregatingProducer`] groups records.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Aggregation {
    /// Buckets of the hash-key space (default 64). Never change it for a stream that has
    /// records in flight: a key whose bucket changes moves to another outer partition key.
    /// Use at least four times the stream's shard count so that buckets spread over shards.
    pub buckets: u32,
    /// User records per aggregate at most (default 100,000).
    pub max_records: usize,
}

impl Default for Aggregation {
    fn default() -> Self {
        Self { buckets: 64, max_records: 100_000 }
    }
}

impl Aggregation {
    /// Buckets of the hash-key space (at least 1).
    pub fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets.max(1);
        self
    }

    /// User records per aggregate at most (at least 1).
    pub fn max_records(mut self, n: usize) -> Self {
        self.max_records = n.max(1);
        self
    }
}

/// An aggregate being filled: the builder and which inputs it holds.
struct Open {
    builder: AggregateBuilder,
    members: Vec<usize>,
    earliest: Option<SystemTime>,
    /// The latest commit window of its records (with [`CommitTimeInContext::Window`]); the
    /// context shows the earliest.
    window: Option<SystemTime>,
}

impl Open {
    /// An aggregate with room for `bytes`.
    fn new(bytes: usize) -> Self {
        Self { builder: AggregateBuilder::with_capacity(bytes), members: Vec::new(), earliest: None, window: None }
    }
}

/// A sealed aggregate of one bucket.
struct Sealed {
    bucket: usize,
    bytes: zeroize::Zeroizing<Vec<u8>>,
    members: Vec<usize>,
    earliest: Option<SystemTime>,
    /// Its place in the put's send order: every aggregate of a lower rank is in the stream
    /// before it is sent.
    rank: usize,
}

/// Orders a put's aggregates by the commit time their contexts will show, keeping each bucket's
/// aggregates in their order (a bucket's key is the running maximum of the times its
/// aggregates show, and the sort is stable; aggregates without a time come first), and ranks
/// them for [`SendOrder::Ranked`]: with windowed commit times one rank per key (window), with
/// exact times a new rank wherever a bucket repeats, without times one rank. Sent rank by rank,
/// a shard's aggregates carry non-decreasing commit times, as records of their own do, so the
/// replicator's watermark over the last two bounds the aggregates after them.
fn in_commit_order(full: &mut Vec<(usize, Open)>, mode: CommitTimeInContext) -> Vec<usize> {
    let mut latest: HashMap<usize, SystemTime> = HashMap::new();
    let mut keyed: Vec<(Option<SystemTime>, (usize, Open))> = full
        .drain(..)
        .map(|(bucket, o)| {
            let shown = o.earliest.and_then(|t| mode.shown(t).ok().flatten());
            let key = match (latest.get(&bucket).copied(), shown) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(k) = key {
                latest.insert(bucket, k);
            }
            (key, (bucket, o))
        })
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    let mut ranks: Vec<usize> = Vec::with_capacity(keyed.len());
    let mut previous = None;
    let mut in_rank: HashSet<usize> = HashSet::new();
    for (key, (bucket, o)) in keyed {
        let next = !ranks.is_empty()
            && match mode {
                CommitTimeInContext::Window(_) => previous != Some(key),
                // Exact times: a new rank where a bucket repeats, so the ranks go out in this order.
                CommitTimeInContext::Exact => in_rank.contains(&bucket),
                CommitTimeInContext::Omit => false,
            };
        if next {
            in_rank.clear();
        }
        in_rank.insert(bucket);
        ranks.push(ranks.last().map_or(0, |&r| r + usize::from(next)));
        previous = Some(key);
        full.push((bucket, o));
    }
    ranks
}

/// The largest payload a record of `key` can have in an aggregate of its own of at most
/// `budget` bytes.
fn max_single_payload(key: &str, budget: usize) -> Option<usize> {
    if AggregateBuilder::single_len(key, 0) > budget {
        return None;
    }
    let (mut lo, mut hi) = (0usize, budget);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if AggregateBuilder::single_len(key, mid) <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Encrypts user records in aggregates and puts them; see the module documentation.
pub struct AggregatingProducer {
    producer: Producer,
    config: Aggregation,
    outer_keys: Vec<String>,
    /// Per bucket, the largest aggregate that fits (computed once from the codec's header).
    budgets: Mutex<Option<Vec<u64>>>,
}

impl Producer {
    /// This producer in aggregating mode.
    pub fn aggregating(self, config: Aggregation) -> AggregatingProducer {
        let outer_keys = (0..config.buckets).map(|b| bucket_partition_key(b, config.buckets)).collect();
        AggregatingProducer { producer: self, config, outer_keys, budgets: Mutex::new(None) }
    }
}

impl AggregatingProducer {
    /// The producer underneath (its codec, stream and put settings).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Buckets of the hash-key space.
    pub fn buckets(&self) -> u32 {
        self.config.buckets
    }

    /// The outer partition key of the aggregates holding records of `partition_key`.
    pub fn outer_key(&self, partition_key: &str) -> &str {
        &self.outer_keys[bucket_of(partition_key, self.config.buckets) as usize]
    }

    /// The budgets, computed at the first `put` with the materials of its earliest record's
    /// aggregate.
    async fn budgets(&self, earliest: Option<SystemTime>) -> crate::Result<Vec<u64>> {
        if let Some(b) = self.budgets.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(b);
        }
        let b = self.producer.codec().aggregate_budgets(&self.outer_keys, earliest).await?;
        *self.budgets.lock().unwrap_or_else(|p| p.into_inner()) = Some(b.clone());
        Ok(b)
    }

    /// Aggregates `records` (partition key, payload, commit time) per bucket, encrypts each
    /// aggregate and puts them, in order per bucket. The report accounts for every input
    /// record: put (with its aggregate's sequence number and its sub-sequence number) or
    /// failed. The records are collected first, so the future holds no iterator.
    pub fn put<'a, I>(&'a self, records: I) -> impl std::future::Future<Output = PutReport> + Send + 'a
    where
        I: IntoIterator<Item = (&'a str, &'a [u8], Option<SystemTime>)>,
    {
        let records: Vec<(&'a str, &'a [u8], Option<SystemTime>)> = records.into_iter().collect();
        self.put_collected(records)
    }

    async fn put_collected(&self, records: Vec<(&str, &[u8], Option<SystemTime>)>) -> PutReport {
        if let Err(e) = self.producer.check_region().await {
            return PutReport::refused(records.iter().map(|r| r.0), &e);
        }
        // A commit time the context cannot carry fails its record (in `fill`), not the budgets.
        let earliest = records.iter().filter_map(|r| r.2).filter(|t| *t >= UNIX_EPOCH).min();
        let budgets = match self.budgets(earliest).await {
            Ok(b) => b,
            Err(e) => return PutReport::refused(records.iter().map(|r| r.0), &e),
        };
        let mut report = PutReport::default();
        let sealed = self.fill(&records, &budgets, &mut report);
        let mut encrypted: Vec<(Sealed, EncryptedRecord)> = Vec::with_capacity(sealed.len());
        // An aggregate that cannot be encrypted holds back its bucket's later aggregates and
        // every later rank, as a failed put would (so a re-put of its records stays in order).
        let mut held: HashSet<usize> = HashSet::new();
        let mut stop: Option<usize> = None;
        let mut first_failed = String::new();
        for s in sealed {
            let held_before = held.contains(&s.bucket);
            let error = if held_before || stop.is_some_and(|r| s.rank > r) {
                None
            } else {
                let key = &self.outer_keys[s.bucket];
                match self.producer.codec().encrypt_aggregate(key, &s.bytes, s.earliest).await {
                    Ok(e) => {
                        encrypted.push((s, e));
                        continue;
                    }
                    Err(e) => Some(KinesisError::from(e)),
                }
            };
            held.insert(s.bucket);
            if stop.is_none() {
                stop = Some(s.rank);
                first_failed = self.outer_keys[s.bucket].clone();
            }
            for &i in &s.members {
                let error = match &error {
                    Some(e) => e.for_each_record(),
                    // Behind its own bucket's failure, or behind the put's first (an earlier rank).
                    None if held_before => KinesisError::HeldBack { failed: self.outer_keys[s.bucket].clone() },
                    None => KinesisError::HeldBack { failed: first_failed.clone() },
                };
                report.failed.push(FailedRecord { index: i, partition_key: records[i].0.to_owned(), error });
            }
        }
        self.send(&records, encrypted, &mut report).await;
        report.failed.sort_by_key(|f| f.index);
        report.put.sort_by_key(|p| p.index);
        report
    }

    /// Groups the records into sealed aggregates, each bucket's in input order, all in send order
    /// ([`in_commit_order`]); records that cannot fit even alone are reported.
    fn fill(
        &self,
        records: &[(&str, &[u8], Option<SystemTime>)],
        budgets: &[u64],
        report: &mut PutReport,
    ) -> Vec<Sealed> {
        let mode = self.producer.codec().commit_time_mode();
        let mut open: Vec<Option<Open>> = (0..self.outer_keys.len()).map(|_| None).collect();
        // Full aggregates, sealed together at the end (their MD5s are computed side by side).
        let mut full: Vec<(usize, Open)> = Vec::new();
        // Bytes each bucket's records still need (an upper bound: a key table entry per record),
        // and how many there are, so that an aggregate is allocated once at about its final size
        // (at most the budget, or `max_records` records of the bucket's average) rather than grown.
        let buckets: Vec<usize> = records.iter().map(|r| bucket_of(r.0, self.config.buckets) as usize).collect();
        let entry = |key: &str, payload: &[u8]| AggregateBuilder::single_len(key, payload.len()) - FIXED_OVERHEAD;
        let mut need = vec![(0usize, 0usize); self.outer_keys.len()];
        for (&bucket, &(key, payload, _)) in buckets.iter().zip(records) {
            let (bytes, count) = &mut need[bucket];
            *bytes = bytes.saturating_add(entry(key, payload));
            *count += 1;
        }
        for (i, (&(key, payload, commit_time), &bucket)) in records.iter().zip(&buckets).enumerate() {
            let budget = budgets[bucket] as usize;
            let (bytes, count) = &mut need[bucket];
            let by_count = (*bytes / (*count).max(1) + 1).saturating_mul(self.config.max_records);
            let room = FIXED_OVERHEAD + (*bytes).min(budget).min(by_count);
            *bytes -= entry(key, payload);
            *count -= 1;
            if AggregateBuilder::single_len(key, payload.len()) > budget {
                // The message around the aggregate takes what the budget leaves of the limit.
                let limit = u64::from(self.producer.codec().record_limit());
                let outer = self.outer_keys[bucket].len() as u64;
                let predicted = limit - budget as u64 + AggregateBuilder::single_len(key, payload.len()) as u64;
                report.failed.push(FailedRecord {
                    index: i,
                    partition_key: key.to_owned(),
                    error: KinesisError::Esdk(esdk::Error::TooLargeAfterEncryption {
                        plaintext_len: payload.len() as u64,
                        predicted_len: predicted,
                        extra_len: outer,
                        limit,
                        max_plaintext: max_single_payload(key, budget).map(|m| m as u64),
                    }),
                });
                continue;
            }
            // A commit time the context cannot carry (before 1970 or after 9999) fails its record alone.
            let shown = match commit_time.map(|t| mode.shown(t)).transpose() {
                Ok(shown) => shown.flatten(),
                Err(e) => {
                    report.failed.push(FailedRecord { index: i, partition_key: key.to_owned(), error: e.into() });
                    continue;
                }
            };
            // With windowed commit times a later window starts an aggregate, so the windows
            // shown go up along a bucket and a later window's aggregates can follow the earlier
            // window's on the stream.
            let window = match mode {
                CommitTimeInContext::Window(_) => shown,
                _ => None,
            };
            let o = open[bucket].get_or_insert_with(|| Open::new(room));
            if !o.builder.is_empty()
                && (o.builder.serialized_len_with(key, payload.len()) > budget
                    || o.builder.len() >= self.config.max_records
                    || window.is_some_and(|w| o.window.is_some_and(|latest| w > latest)))
            {
                if let Some(done) = open[bucket].replace(Open::new(room)) {
                    full.push((bucket, done));
                }
            }
            let Some(o) = open[bucket].as_mut() else { continue };
            o.builder.push(key, payload);
            o.members.push(i);
            // A record of an earlier window joins (the context shows the earliest, a lower bound):
            // input jittering across a boundary does not cut an aggregate per record.
            o.window = o.window.max(window);
            o.earliest = match (o.earliest, commit_time) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        for (bucket, o) in open.into_iter().enumerate() {
            if let Some(o) = o.filter(|o| !o.builder.is_empty()) {
                full.push((bucket, o));
            }
        }
        let ranks = in_commit_order(&mut full, mode);
        let (meta, builders): (Vec<_>, Vec<_>) = full
            .into_iter()
            .zip(ranks)
            .map(|((bucket, o), rank)| ((bucket, o.members, o.earliest, rank), o.builder))
            .unzip();
        AggregateBuilder::finish_all(builders)
            .into_iter()
            .zip(meta)
            .map(|(bytes, (bucket, members, earliest, rank))| Sealed { bucket, bytes, members, earliest, rank })
            .collect()
    }

    async fn send(
        &self,
        records: &[(&str, &[u8], Option<SystemTime>)],
        encrypted: Vec<(Sealed, EncryptedRecord)>,
        report: &mut PutReport,
    ) {
        let entries: Vec<(&str, &Bytes)> = encrypted.iter().map(|(_, e)| (e.partition_key.as_str(), &e.data)).collect();
        let ranks: Vec<usize> = encrypted.iter().map(|(s, _)| s.rank).collect();
        let (outcomes, stats) = put_ordered(
            self.producer.client(),
            self.producer.stream(),
            &entries,
            self.producer.put_config(),
            SendOrder::Ranked(&ranks),
        )
        .await;
        report.requests += stats.requests;
        report.retried += stats.retried_entries;
        for ((sealed, record), outcome) in encrypted.iter().zip(outcomes) {
            match outcome {
                EntryOutcome::Put { sequence_number, shard_id } => {
                    report.count_record(record.data.len(), record.partition_key.len());
                    for (sub, &i) in sealed.members.iter().enumerate() {
                        report.plaintext_bytes += records[i].1.len() as u64;
                        report.put.push(PutRecordResult {
                            index: i,
                            shard_id: shard_id.clone(),
                            sequence_number: sequence_number.clone(),
                            sub_sequence: Some(sub as u64),
                            message_id: record.message_id().to_vec(),
                            record_len: record.data.len(),
                        });
                    }
                }
                EntryOutcome::Failed(e) => {
                    for &i in &sealed.members {
                        report.failed.push(FailedRecord {
                            index: i,
                            partition_key: records[i].0.to_owned(),
                            error: e.for_each_record(),
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn aggregates_go_in_commit_order_and_each_bucket_keeps_its_order() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let open = |earliest: Option<u64>, id: usize| {
            let mut o = Open::new(0);
            o.earliest = earliest.map(t);
            o.members.push(id);
            o
        };
        // Flushed in this order: bucket 1's first aggregate was filled before bucket 0's, and
        // bucket 1's second holds a record older than its first (disorder in the input).
        let mut full = vec![
            (1, open(Some(50), 0)),
            (0, open(Some(30), 1)),
            (1, open(Some(20), 2)),
            (2, open(None, 3)),
            (0, open(Some(90), 4)),
            (2, open(Some(10), 5)),
        ];
        let mut exact: Vec<(usize, Open)> = full
            .iter()
            .map(|(b, o)| (*b, open(o.earliest.map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs()), o.members[0])))
            .collect();
        let ranks = in_commit_order(&mut full, CommitTimeInContext::Window(Duration::from_secs(10)));
        let order: Vec<usize> = full.iter().map(|(_, o)| o.members[0]).collect();
        assert_eq!(order, [3, 5, 1, 0, 2, 4]);
        assert_eq!(ranks, [0, 1, 2, 3, 3, 4], "one rank per window shown");
        assert_eq!(
            in_commit_order(&mut exact, CommitTimeInContext::Exact),
            [0, 1, 1, 1, 2, 2],
            "a rank ends where a bucket repeats"
        );
        assert_eq!(exact.iter().map(|(_, o)| o.members[0]).collect::<Vec<_>>(), order);
    }
}
