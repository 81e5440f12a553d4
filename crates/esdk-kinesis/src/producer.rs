//! Encrypting producer: record codec + ordered `PutRecords` batching, guarded by the
//! active-Region flag.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::control::{ActiveRegion, ControlTable};
use crate::put::{put_ordered, EntryOutcome, PutConfig, SendOrder};
use crate::record::{EncryptedRecord, RecordCodec};
use crate::{KinesisError, Result};

/// How long a producer trusts the active-Region flag it read.
pub const DEFAULT_FLAG_TTL: Duration = Duration::from_secs(1);

/// How a producer learns whether its Region may produce.
enum Guard {
    /// Read the flag (cached for the TTL); refuse when it names another Region.
    Flag { table: ControlTable, ttl: Duration, cached: Mutex<Option<(Instant, ActiveRegion)>> },
    /// Produce without asking.
    Unchecked,
}

/// Encrypts records and puts them to one stream.
pub struct Producer {
    client: aws_sdk_kinesis::Client,
    stream: String,
    codec: RecordCodec,
    put: PutConfig,
    guard: Guard,
}

/// A record that was put.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PutRecordResult {
    /// Index in the caller's input.
    pub index: usize,
    /// Shard it landed in.
    pub shard_id: String,
    /// Its sequence number.
    pub sequence_number: String,
    /// Its position inside the aggregate it was put in (`None`: put as a record of its own).
    pub sub_sequence: Option<u64>,
    /// ESDK message id.
    pub message_id: Vec<u8>,
    /// Bytes of the Kinesis record (data only; an aggregate's for all its user records).
    pub record_len: usize,
}

/// A record that could not be put, and why.
#[derive(Debug)]
#[non_exhaustive]
pub struct FailedRecord {
    /// Index in the caller's input.
    pub index: usize,
    /// Its partition key.
    pub partition_key: String,
    /// Why (encryption, size, or the last Kinesis error after retries).
    pub error: KinesisError,
}

/// Result of [`Producer::put`]: every input index is in exactly one of the two lists.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct PutReport {
    /// Records now in the stream, in input order.
    pub put: Vec<PutRecordResult>,
    /// Records not put, in input order. Retry them (in order) or dead-letter them.
    pub failed: Vec<FailedRecord>,
    /// `PutRecords` requests sent.
    pub requests: u64,
    /// Records that needed more than one attempt.
    pub retried: u64,
    /// Plaintext bytes encrypted (user records' payloads).
    pub plaintext_bytes: u64,
    /// Kinesis record bytes put (data only).
    pub record_bytes: u64,
    /// Kinesis records put (aggregates count once).
    pub kinesis_records: u64,
    /// PUT payload units used (Kinesis bills 25 KB units per record, partition key included).
    pub put_payload_units: u64,
}

/// The size of one PUT payload unit.
pub const PUT_PAYLOAD_UNIT: u64 = 25 * 1024;

impl PutReport {
    /// A report of `keys` all refused with `error` (as [`KinesisError::for_each_record`] copies it).
    pub(crate) fn refused<'a>(keys: impl IntoIterator<Item = &'a str>, error: &KinesisError) -> Self {
        let failed = keys
            .into_iter()
            .enumerate()
            .map(|(index, key)| FailedRecord { index, partition_key: key.to_owned(), error: error.for_each_record() })
            .collect();
        Self { failed, ..Self::default() }
    }

    /// Counts one Kinesis record put.
    pub(crate) fn count_record(&mut self, data_len: usize, key_len: usize) {
        self.kinesis_records += 1;
        self.record_bytes += data_len as u64;
        self.put_payload_units += ((data_len + key_len) as u64).div_ceil(PUT_PAYLOAD_UNIT).max(1);
    }
}

impl Producer {
    /// A producer writing to `stream` with `client` (whose Region is the codec's origin Region).
    /// Before putting, it checks that `flag_table` names its Region as the active one (the flag
    /// is cached for [`DEFAULT_FLAG_TTL`]); otherwise every record fails with
    /// [`KinesisError::RegionNotActive`] and nothing is sent.
    pub fn new(client: aws_sdk_kinesis::Client, stream: &str, codec: RecordCodec, flag_table: ControlTable) -> Self {
        let guard = Guard::Flag { table: flag_table, ttl: DEFAULT_FLAG_TTL, cached: Mutex::new(None) };
        Self::with_guard(client, stream, codec, guard)
    }

    /// **Danger:** a producer that never checks the active-Region flag: for a stream that is
    /// not replicated, or to write in a Region that is not active on purpose (records produced
    /// there still reach the other Region through its replicator).
    pub fn danger_produce_while_inactive(client: aws_sdk_kinesis::Client, stream: &str, codec: RecordCodec) -> Self {
        Self::with_guard(client, stream, codec, Guard::Unchecked)
    }

    fn with_guard(client: aws_sdk_kinesis::Client, stream: &str, codec: RecordCodec, guard: Guard) -> Self {
        let put = PutConfig { record_limit: codec.record_limit() as usize, ..PutConfig::default() };
        Self { client, stream: stream.to_owned(), codec, put, guard }
    }

    /// How long the active-Region flag is trusted once read (default 1 s).
    pub fn with_flag_ttl(mut self, ttl: Duration) -> Self {
        if let Guard::Flag { ttl: t, .. } = &mut self.guard {
            *t = ttl;
        }
        self
    }

    /// Whether this producer's Region may produce now.
    pub(crate) async fn check_region(&self) -> Result<()> {
        let Guard::Flag { table, ttl, cached } = &self.guard else { return Ok(()) };
        let fresh = cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < *ttl)
            .map(|(_, flag)| flag.clone());
        let flag = match fresh {
            Some(f) => f,
            None => {
                let f = table.active_region(&self.stream).await?;
                *cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), f.clone()));
                f
            }
        };
        if flag.region != self.codec.origin_region() {
            return Err(KinesisError::RegionNotActive { region: self.codec.origin_region().to_owned(), active: flag });
        }
        Ok(())
    }

    /// Replaces the batching and retry settings (the record limit stays the codec's).
    pub fn with_put_config(mut self, put: PutConfig) -> Result<Self> {
        put.validate()?;
        self.put = PutConfig { record_limit: self.codec.record_limit() as usize, ..put };
        Ok(self)
    }

    /// The record codec.
    pub fn codec(&self) -> &RecordCodec {
        &self.codec
    }

    /// The stream written to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub(crate) fn client(&self) -> &aws_sdk_kinesis::Client {
        &self.client
    }

    pub(crate) fn put_config(&self) -> &PutConfig {
        &self.put
    }

    /// Encrypts `records` (partition key, payload, commit time) and puts them. Records that fail
    /// to encrypt (e.g. too large after encryption) are reported and never sent. The records
    /// are collected first, so the returned future holds no iterator (it can be spawned).
    pub fn put<'a, I>(&'a self, records: I) -> impl std::future::Future<Output = PutReport> + Send + 'a
    where
        I: IntoIterator<Item = (&'a str, &'a [u8], Option<SystemTime>)>,
    {
        let records: Vec<(&'a str, &'a [u8], Option<SystemTime>)> = records.into_iter().collect();
        self.put_collected(records)
    }

    async fn put_collected(&self, records: Vec<(&str, &[u8], Option<SystemTime>)>) -> PutReport {
        if let Err(refusal) = self.check_region().await {
            return PutReport::refused(records.iter().map(|r| r.0), &refusal);
        }
        let mut report = PutReport::default();
        let mut encrypted: Vec<(usize, EncryptedRecord)> = Vec::new();
        for (index, (key, payload, commit_time)) in records.into_iter().enumerate() {
            match self.codec.encrypt(key, payload, commit_time).await {
                Ok(r) => encrypted.push((index, r)),
                Err(e) => report.failed.push(FailedRecord { index, partition_key: key.to_owned(), error: e.into() }),
            }
        }
        self.put_checked(encrypted, report).await
    }

    /// Puts records encrypted earlier (e.g. with [`RecordCodec::encrypt`] on other threads).
    pub async fn put_encrypted(&self, encrypted: Vec<(usize, EncryptedRecord)>, mut report: PutReport) -> PutReport {
        if let Err(refusal) = self.check_region().await {
            for (index, record) in encrypted {
                let error = refusal.for_each_record();
                report.failed.push(FailedRecord { index, partition_key: record.partition_key, error });
            }
            report.failed.sort_by_key(|f| f.index);
            return report;
        }
        self.put_checked(encrypted, report).await
    }

    async fn put_checked(&self, encrypted: Vec<(usize, EncryptedRecord)>, mut report: PutReport) -> PutReport {
        let entries: Vec<(&str, &bytes::Bytes)> =
            encrypted.iter().map(|(_, r)| (r.partition_key.as_str(), &r.data)).collect();
        let (outcomes, stats) = put_ordered(&self.client, &self.stream, &entries, &self.put, SendOrder::PerKey).await;
        report.requests += stats.requests;
        report.retried += stats.retried_entries;
        for ((index, record), outcome) in encrypted.into_iter().zip(outcomes) {
            match outcome {
                EntryOutcome::Put { sequence_number, shard_id } => {
                    report.plaintext_bytes += record.plaintext_len as u64;
                    report.count_record(record.data.len(), record.partition_key.len());
                    report.put.push(PutRecordResult {
                        index,
                        shard_id,
                        sequence_number,
                        sub_sequence: None,
                        message_id: record.message_id().to_vec(),
                        record_len: record.data.len(),
                    });
                }
                EntryOutcome::Failed(error) => {
                    report.failed.push(FailedRecord { index, partition_key: record.partition_key, error })
                }
            }
        }
        report.failed.sort_by_key(|f| f.index);
        report
    }
}
