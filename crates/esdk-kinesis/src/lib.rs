//! Encrypted Kinesis records in the AWS Encryption SDK (ESDK) message format, and the pipeline
//! around them: an encrypting producer, a crypto-blind cross-Region replicator and decrypting
//! consumers in either Region.
//!
//! - [`record`] (always built, no I/O): the record codec. One payload, or one [`aggregate`] of
//!   many user records in the KPL aggregation format, becomes one ESDK message whose encryption
//!   context carries public fields (stream, origin Region, commit time, aggregate marker) that
//!   key-less code reads with [`record::RecordHeader::parse`].
//!
//! With feature `aws` (default), on the standard `aws-sdk-kinesis` / `aws-sdk-dynamodb` clients,
//! one per Region:
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
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aggregate;
mod md5_lanes;
pub mod record;

#[cfg(feature = "aws")]
mod aggregating;
#[cfg(feature = "aws")]
mod aws_error;
#[cfg(feature = "aws")]
mod consumer;
#[cfg(feature = "aws")]
mod control;
#[cfg(feature = "aws")]
mod dlq;
#[cfg(feature = "aws")]
mod error;
#[cfg(feature = "aws")]
pub mod lambda;
#[cfg(feature = "aws")]
mod linger;
#[cfg(feature = "aws")]
pub mod ops;
#[cfg(feature = "aws")]
mod producer;
#[cfg(feature = "aws")]
mod put;
#[cfg(feature = "aws")]
mod reader;
#[cfg(feature = "aws")]
mod replicator;
#[cfg(feature = "aws")]
mod retry;
#[cfg(feature = "aws")]
mod source;

#[cfg(feature = "aws")]
pub use aggregating::{AggregatingProducer, Aggregation};
#[cfg(feature = "aws")]
pub use consumer::{
    ConsumeOutcome, Consumer, DeliveredRecord, RecordFailure, DEFAULT_DEDUP_WINDOW, DEFAULT_MAX_BATCH_RECORDS,
    DEFAULT_STORED_IDENTITIES,
};
#[cfg(feature = "aws")]
pub use control::{
    ActiveRegion, Checkpoint, CheckpointWrite, ConsumerPosition, ControlTable, Lease, ResumePoint, ShardProgress,
};
#[cfg(feature = "aws")]
pub use dlq::{DeadLetter, DeadLetterQueue};
#[cfg(feature = "aws")]
pub use error::{KinesisError, Result};
#[cfg(feature = "aws")]
pub use linger::{Sender, DEFAULT_LINGER};
#[cfg(feature = "aws")]
pub use producer::{FailedRecord, Producer, PutRecordResult, PutReport, DEFAULT_FLAG_TTL, PUT_PAYLOAD_UNIT};
#[cfg(feature = "aws")]
pub use put::PutConfig;
#[cfg(feature = "aws")]
pub use reader::{Advance, Batch, ReaderConfig, ShardInfo, ShardPosition, StartPosition, StreamReader};
#[cfg(feature = "aws")]
pub use replicator::{
    BatchOutcome, RefusedRecord, Replicator, ReplicatorBuilder, ReplicatorMetrics, AGGREGATE_WEIGHT,
    DEFAULT_CLOCK_SKEW, WATERMARK_WINDOW,
};
#[cfg(feature = "aws")]
pub use source::SourceRecord;
