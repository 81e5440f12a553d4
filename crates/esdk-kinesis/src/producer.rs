//! Encrypting producer: record codec + ordered `PutRecords` batching.

use std::time::SystemTime;

use crate::put::{put_ordered, EntryOutcome, PutConfig};
use crate::record::{EncryptedRecord, RecordCodec};
use crate::{KinesisError, Result};

/// Encrypts records and puts them to one stream.
pub struct Producer {
    client: aws_sdk_kinesis::Client,
    stream: String,
    codec: RecordCodec,
    put: PutConfig,
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
    /// ESDK message id.
    pub message_id: Vec<u8>,
    /// Bytes of the record (data only).
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
    /// Plaintext bytes encrypted.
    pub plaintext_bytes: u64,
    /// Record bytes put (data only).
    pub record_bytes: u64,
}

impl Producer {
    /// A producer writing to `stream` with `client` (whose Region is the codec's origin Region).
    pub fn new(client: aws_sdk_kinesis::Client, stream: &str, codec: RecordCodec) -> Self {
        let put = PutConfig { record_limit: codec.record_limit() as usize, ..PutConfig::default() };
        Self { client, stream: stream.to_owned(), codec, put }
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

    /// Encrypts `records` (partition key, payload, commit time) and puts them. Records that fail
    /// to encrypt (e.g. too large after encryption) are reported and never sent.
    pub async fn put<'a, I>(&self, records: I) -> PutReport
    where
        I: IntoIterator<Item = (&'a str, &'a [u8], Option<SystemTime>)>,
    {
        let mut report = PutReport::default();
        let mut encrypted: Vec<(usize, EncryptedRecord)> = Vec::new();
        for (index, (key, payload, commit_time)) in records.into_iter().enumerate() {
            match self.codec.encrypt(key, payload, commit_time).await {
                Ok(r) => encrypted.push((index, r)),
                Err(e) => report.failed.push(FailedRecord { index, partition_key: key.to_owned(), error: e.into() }),
            }
        }
        self.put_encrypted(encrypted, report).await
    }

    /// Puts records encrypted earlier (e.g. with [`RecordCodec::encrypt`] on other threads).
    pub async fn put_encrypted(&self, encrypted: Vec<(usize, EncryptedRecord)>, mut report: PutReport) -> PutReport {
        let entries: Vec<(&str, &bytes::Bytes)> =
            encrypted.iter().map(|(_, r)| (r.partition_key.as_str(), &r.data)).collect();
        let (outcomes, stats) = put_ordered(&self.client, &self.stream, &entries, &self.put).await;
        report.requests += stats.requests;
        report.retried += stats.retried_entries;
        for ((index, record), outcome) in encrypted.into_iter().zip(outcomes) {
            match outcome {
                EntryOutcome::Put { sequence_number, shard_id } => {
                    report.plaintext_bytes += record.plaintext_len as u64;
                    report.record_bytes += record.data.len() as u64;
                    report.put.push(PutRecordResult {
                        index,
                        shard_id,
                        sequence_number,
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
