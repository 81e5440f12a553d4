//! Errors of the Kinesis layer: which call failed on which resource, with the AWS error code and
//! whether retrying can help.

/// Errors of the Kinesis layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KinesisError {
    /// Encryption, decryption or header parsing failed.
    #[error(transparent)]
    Esdk(#[from] esdk::Error),
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
    /// Not sent because an aggregate before it (under outer partition key `failed`: of its own
    /// bucket, or of an earlier rank of the put, such as an earlier commit window) was not put:
    /// sending this one first would reorder the bucket's keys or let the failover watermark
    /// pass that aggregate's records. Put both again in order.
    #[error("not sent: an earlier aggregate (outer partition key {failed:?}) was not put, and this record must not overtake it; put both again in order")]
    HeldBack {
        /// The outer partition key of the aggregate that was not put.
        failed: String,
    },
    /// Encryption failed for a group this record belongs to (its aggregate, or the materials of
    /// a put): the group's error, for each of its records.
    #[error("not encrypted ({kind:?}): {reason}")]
    NotEncrypted {
        /// The encryption error's kind.
        kind: esdk::ErrorKind,
        /// What failed.
        reason: String,
        /// Whether putting the records again can help.
        retryable: bool,
    },
    /// A Lambda event could not be read.
    #[error("invalid Kinesis Lambda event: {0}")]
    InvalidEvent(String),
    /// A Lambda event from a stream or Region the replicator is not configured for: nothing
    /// of it was forwarded.
    #[error("refused an event from {event_source_arn:?}: this replicator reads {expected}; nothing was forwarded (fix the event source mapping or the function's ESDK_SOURCE_STREAM / Region)")]
    ForeignSource {
        /// The record's `eventSourceARN`.
        event_source_arn: String,
        /// What the replicator reads.
        expected: String,
    },
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An SQS call failed (the dead-letter queue).
    #[error("SQS {operation} on queue {queue} failed: {code}{}{} ({})", sep(message), message, retry_hint(*retryable))]
    Sqs {
        /// The operation.
        operation: &'static str,
        /// Queue URL.
        queue: String,
        /// AWS error code or transport failure class.
        code: String,
        /// Detail.
        message: String,
        /// Whether a retry can help.
        retryable: bool,
    },
    /// The control table has no active-Region item for the stream. Retryable: nothing is skipped
    /// or acknowledged while it is missing.
    #[error("control table {table:?} has no active-Region flag for stream {stream:?}; create it with `esdk kinesis init` (nothing is replicated or acknowledged until it exists)")]
    FlagMissing {
        /// Table name.
        table: String,
        /// Stream.
        stream: String,
    },
    /// A fenced change of the active Region lost: the flag is not at the expected epoch.
    #[error("the active-Region flag in {table:?} changed underneath: expected epoch {}, found {} at epoch {}; read it again and decide once more", expected.map_or("none (first set)".to_owned(), |e| e.to_string()), current.region, current.epoch)]
    FlagConflict {
        /// Table name.
        table: String,
        /// The epoch the change was based on (`None`: the first set).
        expected: Option<u64>,
        /// The flag as stored.
        current: crate::ActiveRegion,
    },
    /// A producer refused to write: its Region is not the active one.
    #[error("not producing in {region}: the active Region is {} (epoch {}); produce there, or fail over first (a producer built with `danger_produce_while_inactive` writes anyway)", active.region, active.epoch)]
    RegionNotActive {
        /// This producer's Region.
        region: String,
        /// The flag.
        active: crate::ActiveRegion,
    },
    /// A record the replicator must not forward, with no dead-letter queue to put it in: the
    /// batch stops before it (it is not checkpointed past).
    #[error("record {sequence_number} of shard {shard_id} is refused ({reason}) and no dead-letter queue is configured: replication of this shard stops here; configure a dead-letter queue or allow its key")]
    Refused {
        /// Source shard.
        shard_id: String,
        /// Its sequence number.
        sequence_number: String,
        /// Why.
        reason: String,
    },
    /// A decrypted record marked as an aggregate does not parse as one (its producer holds the
    /// key, so this is poison, not tampering in transit).
    #[error("malformed aggregate: {0}")]
    Aggregate(#[from] crate::aggregate::AggregateError),
    /// An internal invariant failed (a bug: please report it).
    #[error("internal error (a bug in esdk-kinesis, please report it): {0}")]
    Internal(&'static str),
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
    /// The ESDK error inside, if this is one (decryption, encryption, header parsing).
    pub fn esdk(&self) -> Option<&esdk::Error> {
        match self {
            Self::Esdk(e) => Some(e),
            _ => None,
        }
    }

    /// Whether retrying later could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Esdk(e) => e.is_retryable(),
            Self::Kinesis { retryable, .. } | Self::DynamoDb { retryable, .. } | Self::Sqs { retryable, .. } => {
                *retryable
            }
            Self::NotEncrypted { retryable, .. } => *retryable,
            Self::NotSent(_) | Self::HeldBack { .. } | Self::FlagMissing { .. } => true,
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

    /// The same error for another record of a batch that failed as a whole (the producer's
    /// active-Region check, an aggregate that was not put or not encrypted): the variants named
    /// here keep their fields, an ESDK error becomes [`Self::NotEncrypted`] (its kind, text and
    /// retryability), anything else [`Self::InvalidConfig`] with its text.
    pub(crate) fn for_each_record(&self) -> Self {
        match self {
            Self::Kinesis { operation, stream, code, message, retryable } => Self::Kinesis {
                operation,
                stream: stream.clone(),
                code: code.clone(),
                message: message.clone(),
                retryable: *retryable,
            },
            Self::NotSent(key) => Self::NotSent(key.clone()),
            Self::HeldBack { failed } => Self::HeldBack { failed: failed.clone() },
            Self::Esdk(e) => Self::NotEncrypted { kind: e.kind(), reason: e.to_string(), retryable: e.is_retryable() },
            Self::NotEncrypted { kind, reason, retryable } => {
                Self::NotEncrypted { kind: *kind, reason: reason.clone(), retryable: *retryable }
            }
            Self::RecordTooLarge { len, limit } => Self::RecordTooLarge { len: *len, limit: *limit },
            Self::RegionNotActive { region, active } => {
                Self::RegionNotActive { region: region.clone(), active: active.clone() }
            }
            Self::FlagMissing { table, stream } => Self::FlagMissing { table: table.clone(), stream: stream.clone() },
            Self::DynamoDb { operation, table, code, message, retryable } => Self::DynamoDb {
                operation,
                table: table.clone(),
                code: code.clone(),
                message: message.clone(),
                retryable: *retryable,
            },
            Self::ControlTable { table, reason } => Self::ControlTable { table: table.clone(), reason: reason.clone() },
            other => Self::InvalidConfig(other.to_string()),
        }
    }

    pub(crate) fn sqs<E>(
        operation: &'static str,
        queue: &str,
        err: &aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let f = crate::aws_error::classify(err);
        Self::Sqs { operation, queue: queue.to_owned(), code: f.code, message: f.message, retryable: f.retryable }
    }
}

/// Result alias for the Kinesis layer.
pub type Result<T, E = KinesisError> = core::result::Result<T, E>;
