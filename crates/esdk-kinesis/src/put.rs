//! `PutRecords` batching shared by the producer and the replicator: Kinesis limits, retries of
//! failed entries only, and per-partition-key order.
//!
//! Kinesis does not order the records of one `PutRecords` request relative to each other when some
//! fail (a later record of a key can succeed while an earlier one is throttled). So a round sends
//! at most one record per partition key; the next record of that key goes in a later round, after
//! the earlier one has succeeded. When a record fails for good, the later records of its key are
//! not sent either (reported as such), so a caller can re-put them in order. Ranked sending
//! ([`SendOrder::Ranked`], the aggregating producer's commit windows) also holds a rank back
//! until the ranks before it are in the stream.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;

use crate::record::DEFAULT_RECORD_LIMIT;
use crate::retry::backoff;
use crate::KinesisError;

/// Kinesis' `PutRecords` limits and this crate's retry policy.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PutConfig {
    /// Records per request (Kinesis: at most 500).
    pub max_records_per_request: usize,
    /// Bytes per request, data plus partition keys (Kinesis: at most 5 MiB).
    pub max_request_bytes: usize,
    /// Bytes per record, data plus partition key (the stream's record limit).
    pub record_limit: usize,
    /// Attempts per record before it is reported as failed.
    pub max_attempts: u32,
    /// First backoff after a round with failures.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
}

impl Default for PutConfig {
    fn default() -> Self {
        Self {
            max_records_per_request: 500,
            max_request_bytes: 5 << 20,
            record_limit: DEFAULT_RECORD_LIMIT as usize,
            max_attempts: 8,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl PutConfig {
    /// Records per request (1..=500).
    pub fn max_records_per_request(mut self, n: usize) -> Self {
        self.max_records_per_request = n;
        self
    }

    /// Bytes per request, data plus partition keys (1..=5 MiB).
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }

    /// Attempts per record before it is reported as failed (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Backoff after a round with failures: exponential from `base`, at most `max`, jittered.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max;
        self
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        if !(1..=500).contains(&self.max_records_per_request)
            || !(1..=5 << 20).contains(&self.max_request_bytes)
            || !(1..=10 << 20).contains(&self.record_limit)
            || self.max_attempts == 0
        {
            return Err(KinesisError::InvalidConfig(format!(
                "PutRecords limits out of range: {} records (1..=500), {} request bytes (1..=5 MiB), {} record bytes (1..=10 MiB), {} attempts (>= 1)",
                self.max_records_per_request, self.max_request_bytes, self.record_limit, self.max_attempts
            )));
        }
        Ok(())
    }
}

/// What happened to one entry.
#[derive(Debug)]
pub(crate) enum EntryOutcome {
    Put { sequence_number: String, shard_id: String },
    Failed(KinesisError),
}

/// Counters of one `put_ordered` call.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PutStats {
    pub requests: u64,
    pub retried_entries: u64,
}

/// Which pending entries a round sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendOrder<'a> {
    /// The first pending entry of every key: order is kept per key only, in as few rounds as
    /// the most frequent key needs.
    PerKey,
    /// Rank by rank, one rank per entry (non-decreasing in the order given): a rank's entries go
    /// only once every entry of the ranks before it is in the stream, in order per key among
    /// themselves; an entry that fails for good stops the later ranks too (not sent), so
    /// nothing of a later rank overtakes it.
    Ranked(&'a [usize]),
}

/// Puts `entries` (partition key, data) in order per key; returns one outcome per entry.
pub(crate) async fn put_ordered(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    entries: &[(&str, &Bytes)],
    cfg: &PutConfig,
    order: SendOrder<'_>,
) -> (Vec<EntryOutcome>, PutStats) {
    let n = entries.len();
    let mut outcomes: Vec<Option<EntryOutcome>> = (0..n).map(|_| None).collect();
    let mut failed_keys: HashSet<&str> = HashSet::new();
    let mut attempts = vec![0u32; n];
    let mut stats = PutStats::default();
    let mut pending: VecDeque<usize> = VecDeque::with_capacity(n);
    for (i, (key, data)) in entries.iter().enumerate() {
        let billed = key.len() + data.len();
        if billed > cfg.record_limit {
            let err = KinesisError::RecordTooLarge { len: billed, limit: cfg.record_limit };
            fail(&mut outcomes, &mut failed_keys, entries, i, err);
        } else {
            pending.push_back(i);
        }
    }
    fail_followers(entries, &failed_keys, order, &mut outcomes, &mut pending);

    // The backoff after a round with failures grows with the attempts of the entries that
    // failed in it, not with the round count: a batch needing one round per record of a key
    // (see below) would otherwise wait the longest backoff after every later failure, while a
    // record refused again and again (a hot shard) still backs off further each time.
    while !pending.is_empty() {
        let selected = select_round(entries, &pending, order);
        // The most attempts of any entry that failed in this round (0: none failed).
        let mut worst = 0u32;
        for request in split_requests(entries, &selected, cfg) {
            stats.requests += 1;
            let built: Result<Vec<PutRecordsRequestEntry>, _> = request
                .iter()
                .map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(entries[i].0)
                        .data(Blob::new(entries[i].1.to_vec()))
                        .build()
                })
                .collect();
            let sent = match built {
                Ok(records) => client.put_records().stream_name(stream).set_records(Some(records)).send().await,
                Err(e) => {
                    for &i in &request {
                        let err = KinesisError::InvalidConfig(format!("cannot build the PutRecords request: {e}"));
                        fail(&mut outcomes, &mut failed_keys, entries, i, err);
                    }
                    continue;
                }
            };
            match sent {
                Ok(resp) => {
                    for (&i, r) in request.iter().zip(resp.records()) {
                        attempts[i] += 1;
                        match (r.error_code(), r.sequence_number(), r.shard_id()) {
                            (None, Some(seq), Some(shard)) => {
                                outcomes[i] = Some(EntryOutcome::Put {
                                    sequence_number: seq.to_owned(),
                                    shard_id: shard.to_owned(),
                                })
                            }
                            (code, _, _) => {
                                worst = worst.max(attempts[i]);
                                if attempts[i] >= cfg.max_attempts {
                                    let err = put_failure(
                                        stream,
                                        code.unwrap_or("MissingSequenceNumber"),
                                        r.error_message().unwrap_or_default(),
                                        attempts[i],
                                        true,
                                    );
                                    fail(&mut outcomes, &mut failed_keys, entries, i, err);
                                }
                            }
                        }
                    }
                    // A response with fewer entries than sent: the rest count as failed attempts.
                    for &i in request.iter().skip(resp.records().len()) {
                        attempts[i] += 1;
                        worst = worst.max(attempts[i]);
                        if attempts[i] >= cfg.max_attempts {
                            let err = put_failure(
                                stream,
                                "MissingResult",
                                "the response had no entry for it",
                                attempts[i],
                                true,
                            );
                            fail(&mut outcomes, &mut failed_keys, entries, i, err);
                        }
                    }
                }
                Err(e) => {
                    // One classification for the whole request; each entry gets its own error.
                    let f = crate::aws_error::classify(&e);
                    for &i in &request {
                        attempts[i] += 1;
                        worst = worst.max(attempts[i]);
                        if !f.retryable || attempts[i] >= cfg.max_attempts {
                            let err = put_failure(stream, &f.code, &f.message, attempts[i], f.retryable);
                            fail(&mut outcomes, &mut failed_keys, entries, i, err);
                        }
                    }
                }
            }
        }
        pending.retain(|&i| outcomes[i].is_none());
        fail_followers(entries, &failed_keys, order, &mut outcomes, &mut pending);
        if worst > 0 && !pending.is_empty() {
            tokio::time::sleep(backoff(cfg.base_backoff, cfg.max_backoff, worst - 1)).await;
        }
    }
    stats.retried_entries = attempts.iter().filter(|&&a| a > 1).count() as u64;
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or(EntryOutcome::Failed(KinesisError::Internal("a PutRecords entry was left undecided"))))
        .collect();
    (outcomes, stats)
}

/// The final error of an entry that PutRecords did not take, after `attempts` attempts.
fn put_failure(stream: &str, code: &str, message: &str, attempts: u32, retryable: bool) -> KinesisError {
    KinesisError::Kinesis {
        operation: "PutRecords",
        stream: stream.to_owned(),
        code: code.to_owned(),
        message: format!("{message} (after {attempts} attempts)"),
        retryable,
    }
}

/// Records a final failure for entry `i` and remembers its key, so later records of that key are
/// not sent out of order.
fn fail<'a>(
    outcomes: &mut [Option<EntryOutcome>],
    failed_keys: &mut HashSet<&'a str>,
    entries: &[(&'a str, &Bytes)],
    i: usize,
    err: KinesisError,
) {
    outcomes[i] = Some(EntryOutcome::Failed(err));
    failed_keys.insert(entries[i].0);
}

/// Marks the pending records that follow a failed record of the same key (or, ranked, of an
/// earlier rank) as not sent.
fn fail_followers(
    entries: &[(&str, &Bytes)],
    failed_keys: &HashSet<&str>,
    order: SendOrder<'_>,
    outcomes: &mut [Option<EntryOutcome>],
    pending: &mut VecDeque<usize>,
) {
    if failed_keys.is_empty() {
        return;
    }
    // Ranked: the lowest rank with a final failure, and that entry's key.
    let (ranks, stop) = match order {
        SendOrder::PerKey => (&[][..], None),
        SendOrder::Ranked(ranks) => (
            ranks,
            outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| matches!(o, Some(EntryOutcome::Failed(_))))
                .map(|(i, _)| (ranks[i], entries[i].0))
                .min(),
        ),
    };
    pending.retain(|&i| {
        let error = if failed_keys.contains(entries[i].0) {
            KinesisError::NotSent(entries[i].0.to_owned())
        } else if let Some((_, key)) = stop.filter(|&(rank, _)| ranks[i] > rank) {
            KinesisError::HeldBack { failed: key.to_owned() }
        } else {
            return true;
        };
        outcomes[i] = Some(EntryOutcome::Failed(error));
        false
    });
}

/// The pending entries the next round sends, in order: the first of each key (of the lowest
/// pending rank, ranked).
fn select_round(entries: &[(&str, &Bytes)], pending: &VecDeque<usize>, order: SendOrder<'_>) -> Vec<usize> {
    let rank = match order {
        SendOrder::PerKey => None,
        SendOrder::Ranked(ranks) => pending.iter().map(|&i| ranks[i]).min().map(|low| (ranks, low)),
    };
    let mut keys = HashSet::new();
    pending
        .iter()
        .copied()
        .filter(|&i| rank.is_none_or(|(ranks, low)| ranks[i] == low))
        .filter(|&i| keys.insert(entries[i].0))
        .collect()
}

/// Splits `selected` (in order) into requests within the record-count and byte limits.
fn split_requests(entries: &[(&str, &Bytes)], selected: &[usize], cfg: &PutConfig) -> Vec<Vec<usize>> {
    let mut requests = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0usize;
    for &i in selected {
        let billed = entries[i].0.len() + entries[i].1.len();
        if !current.is_empty()
            && (current.len() == cfg.max_records_per_request || bytes + billed > cfg.max_request_bytes)
        {
            requests.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += billed;
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_respect_count_and_byte_limits() {
        let big = Bytes::from(vec![0u8; 1 << 20]);
        let small = Bytes::from_static(b"x");
        let keys: Vec<String> = (0..1200).map(|i| format!("k{i}")).collect();
        let mut entries: Vec<(&str, &Bytes)> = keys.iter().map(|k| (k.as_str(), &small)).collect();
        for e in entries.iter_mut().take(12) {
            e.1 = &big;
        }
        let cfg = PutConfig { record_limit: (1 << 20) + 10, ..PutConfig::default() };
        let selected: Vec<usize> = (0..entries.len()).collect();
        let requests = split_requests(&entries, &selected, &cfg);
        for r in &requests {
            assert!(r.len() <= 500);
            let bytes: usize = r.iter().map(|&i| entries[i].0.len() + entries[i].1.len()).sum();
            assert!(bytes <= 5 << 20, "{bytes}");
        }
        let flat: Vec<usize> = requests.concat();
        assert_eq!(flat, selected, "order is kept and nothing is lost");
        assert_eq!(requests[0].len(), 4, "four 1 MiB records (plus keys) fill the first 5 MiB request");
    }

    #[test]
    fn rounds_take_the_first_of_each_key_of_the_lowest_rank() {
        let data = Bytes::from_static(b"x");
        let entries: Vec<(&str, &Bytes)> = ["a", "b", "a", "c", "b", "a"].iter().map(|k| (*k, &data)).collect();
        let ranks = [0, 0, 0, 1, 1, 1];
        let mut pending: VecDeque<usize> = (0..entries.len()).collect();
        assert_eq!(select_round(&entries, &pending, SendOrder::PerKey), [0, 1, 3]);
        assert_eq!(select_round(&entries, &pending, SendOrder::Ranked(&ranks)), [0, 1], "rank 0 first");
        pending.retain(|&i| i > 1);
        assert_eq!(select_round(&entries, &pending, SendOrder::Ranked(&ranks)), [2], "rank 0 until it is done");
        pending.retain(|&i| i > 2);
        assert_eq!(select_round(&entries, &pending, SendOrder::Ranked(&ranks)), [3, 4, 5]);
    }

    #[test]
    fn a_final_failure_stops_its_key_and_ranked_the_later_ranks() {
        let data = Bytes::from_static(b"x");
        let entries: Vec<(&str, &Bytes)> = ["a", "b", "c", "b", "d"].iter().map(|k| (*k, &data)).collect();
        let ranks = [0, 0, 0, 0, 1];
        let failed_keys: HashSet<&str> = HashSet::from(["a"]);
        let left = |order| {
            let mut outcomes: Vec<Option<EntryOutcome>> = (0..entries.len()).map(|_| None).collect();
            outcomes[0] = Some(EntryOutcome::Failed(KinesisError::NotSent("a".into())));
            let mut pending: VecDeque<usize> = (1..entries.len()).collect();
            fail_followers(&entries, &failed_keys, order, &mut outcomes, &mut pending);
            Vec::from(pending)
        };
        assert_eq!(left(SendOrder::PerKey), [1, 2, 3, 4]);
        assert_eq!(left(SendOrder::Ranked(&ranks)), [1, 2, 3], "the same rank goes on; rank 1 waits for a");
    }
}
