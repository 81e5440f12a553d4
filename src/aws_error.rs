//! Classification of the AWS SDK failures of this crate's services (KMS, and DynamoDB for the
//! branch key store): the service's error code (or a transport failure class), its message, and
//! whether a retry can help.

// The smithy runtime types, as every aws-sdk-* crate re-exports them.
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Codes that mean "try again later".
pub(crate) const TRANSIENT_CODES: &[&str] = &[
    // KMS
    "ThrottlingException",
    "Throttling",
    "LimitExceededException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "ServiceUnavailable",
    "InternalFailure",
    // DynamoDB (throttling and transaction conflicts come with HTTP 400)
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
    "InternalServerError",
];

/// `TransactionCanceledException` reasons that mean "try again later".
#[cfg(feature = "hierarchy")]
pub(crate) const TRANSIENT_CANCELLATION_REASONS: &[&str] =
    &["ThrottlingError", "TransactionConflict", "ProvisionedThroughputExceeded"];

/// Whether a service error code (and HTTP status) is transient.
pub(crate) fn is_transient(code: &str, status: Option<u16>) -> bool {
    TRANSIENT_CODES.contains(&code) || status.is_some_and(|s| s >= 500)
}

/// A classified SDK failure.
pub(crate) struct AwsFailure {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

/// Classifies any `aws-sdk-*` operation error.
pub(crate) fn classify<E>(err: &SdkError<E, HttpResponse>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transport = |code: &str, retryable: bool| AwsFailure {
        code: code.to_owned(),
        message: DisplayErrorContext(err).to_string(),
        retryable,
    };
    match err {
        SdkError::TimeoutError(_) => transport("Timeout", true),
        SdkError::DispatchFailure(d) => {
            transport(if d.is_timeout() { "Timeout" } else { "DispatchFailure" }, !d.is_user())
        }
        SdkError::ResponseError(_) => transport("ResponseError", true),
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown");
            let status = se.raw().status().as_u16();
            AwsFailure {
                code: code.to_owned(),
                message: se.err().message().unwrap_or_default().to_owned(),
                retryable: is_transient(code, Some(status)),
            }
        }
        _ => transport("ConstructionFailure", false),
    }
}
