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
    /// A Lambda event could not be read.
    #[error("invalid Kinesis Lambda event: {0}")]
    InvalidEvent(String),
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
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
