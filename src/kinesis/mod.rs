//! Kinesis layer (feature `kinesis`): encrypted producer, crypto-blind cross-Region replicator,
//! consumers in either Region.
//!
//! - [`Producer`]: encrypts payloads with a [`RecordCodec`](crate::record::RecordCodec) and puts
//!   them with `PutRecords` within Kinesis' limits, retrying only failed entries and keeping
//!   per-partition-key order.
//! - [`Replicator`]: forwards record bytes unchanged from the stream in one Region to the same
//!   stream in another, reading only public header fields; guarded by an active-Region flag and
//!   checkpointed with conditional writes in a DynamoDB [`ControlTable`]. The same core serves a
//!   Lambda handler ([`lambda`]) and a polling loop ([`StreamReader`]).
//! - [`Consumer`]: decrypts with the caller's materials manager (e.g. an MRK-aware strict keyring
//!   listing only its own Region's replica ARN), checks the expected encryption context,
//!   de-duplicates by message id and sorts failures into poison and transient.
//!
//! Clients are the standard `aws-sdk-kinesis` / `aws-sdk-dynamodb` clients, one per Region.

mod consumer;
mod control;
pub mod lambda;
mod producer;
mod put;
mod reader;
mod replicator;

use std::time::{Duration, SystemTime};

pub use consumer::{ConsumeOutcome, Consumer, DeliveredRecord, RecordFailure, DEFAULT_DEDUP_WINDOW};
pub use control::{Checkpoint, CheckpointWrite, ControlTable};
pub use producer::{FailedRecord, Producer, PutRecordResult, PutReport};
pub use put::PutConfig;
pub use reader::{StartPosition, StreamReader};
pub use replicator::{BatchOutcome, RefusedRecord, Replicator, ReplicatorMetrics};

/// One record as read from a stream (by `GetRecords` or from a Lambda event).
#[derive(Clone, Debug)]
pub struct SourceRecord {
    /// The shard it was read from.
    pub shard_id: String,
    /// Its sequence number in that shard.
    pub sequence_number: String,
    /// Partition key.
    pub partition_key: String,
    /// The record's bytes (an ESDK message when written by [`Producer`]).
    pub data: bytes::Bytes,
    /// When Kinesis accepted it, if known.
    pub arrival: Option<SystemTime>,
}

/// Errors of the Kinesis layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KinesisError {
    /// Encryption, decryption or header parsing failed.
    #[error(transparent)]
    Esdk(#[from] crate::Error),
    /// A Kinesis call failed.
    #[error("Kinesis {operation} on stream {stream:?} failed: {code}{}{} ({})", sep(message), message, retry_hint(*retryable))]
    Kinesis {
        /// The operation (`PutRecords`, `GetRecords`, ...).
        operation: &'static str,
        /// Stream name.
        stream: String,
        /// AWS error code or transport failure class.
        code: String,
        /// Detail.
        message: String,
        /// Whether a retry can help.
        retryable: bool,
    },
    /// A DynamoDB call failed.
    #[error("DynamoDB {operation} on table {table:?} failed: {code}{}{} ({})", sep(message), message, retry_hint(*retryable))]
    DynamoDb {
        /// The operation.
        operation: &'static str,
        /// Table name.
        table: String,
        /// AWS error code or transport failure class.
        code: String,
        /// Detail.
        message: String,
        /// Whether a retry can help.
        retryable: bool,
    },
    /// The control table holds something this crate did not write.
    #[error("control table {table:?}: {reason}")]
    ControlTable {
        /// Table name.
        table: String,
        /// What was wrong.
        reason: String,
    },
    /// A record exceeds the destination stream's per-record limit (data plus partition key).
    #[error("record of {len} bytes (data plus partition key) exceeds the stream's record limit of {limit} bytes; raise the stream's limit (up to 10 MiB) or split the payload")]
    RecordTooLarge {
        /// Data plus partition key.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not sent because an earlier record with the same partition key failed; sending it would
    /// reorder the key. Put it again after that record.
    #[error("not sent: an earlier record with partition key {0:?} failed, and sending this one would reorder the key; put both again in order")]
    NotSent(String),
    /// A Lambda event could not be read.
    #[error("invalid Kinesis Lambda event: {0}")]
    InvalidEvent(String),
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

fn sep(message: &str) -> &'static str {
    if message.is_empty() {
        ""
    } else {
        ": "
    }
}

fn retry_hint(retryable: bool) -> &'static str {
    if retryable {
        "transient: retrying later may help"
    } else {
        "permanent: check the resource name, Region and permissions"
    }
}

impl KinesisError {
    /// Whether retrying later could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Esdk(e) => e.is_retryable(),
            Self::Kinesis { retryable, .. } | Self::DynamoDb { retryable, .. } => *retryable,
            Self::NotSent(_) => true,
            _ => false,
        }
    }

    pub(crate) fn kinesis<E>(
        operation: &'static str,
        stream: &str,
        err: &aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let f = crate::aws_error::classify(err);
        Self::Kinesis { operation, stream: stream.to_owned(), code: f.code, message: f.message, retryable: f.retryable }
    }

    pub(crate) fn dynamodb<E>(
        operation: &'static str,
        table: &str,
        err: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let f = crate::aws_error::classify(err);
        Self::DynamoDb { operation, table: table.to_owned(), code: f.code, message: f.message, retryable: f.retryable }
    }
}

/// Result alias for the Kinesis layer.
pub type Result<T, E = KinesisError> = core::result::Result<T, E>;

/// Exponential backoff with full jitter: a random delay in `[0, min(cap, base * 2^attempt)]`.
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let mut r = [0u8; 8];
    // The OS generator; a failure only loses the jitter.
    let _ = getrandom::fill(&mut r);
    let frac = (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(frac)
}

/// Compares two Kinesis sequence numbers (decimal strings of up to 128 digits) numerically.
pub(crate) fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert_eq!(seq_cmp("9", "10"), Ordering::Less);
        assert_eq!(
            seq_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692540925702759324208523137515618"
            ),
            Ordering::Less
        );
        assert_eq!(seq_cmp("007", "7"), Ordering::Equal);
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 0..40 {
            assert!(
                backoff(Duration::from_millis(10), Duration::from_millis(500), attempt) <= Duration::from_millis(500)
            );
        }
    }
}
