//! Classification of the AWS SDK failures of this crate's services (Kinesis, DynamoDB): the
//! service's error code (or a transport failure class), its message, and whether a retry can help.

// The smithy runtime types, as every aws-sdk-* crate re-exports them.
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Codes that mean "try again later" for Kinesis and DynamoDB.
const TRANSIENT_CODES: &[&str] = &[
    // Kinesis
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "KMSThrottlingException",
    "InternalFailure",
    "ServiceUnavailable",
    // DynamoDB
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "TransactionConflictException",
    // Common
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// A classified SDK failure.
pub(crate) struct AwsFailure {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

/// Classifies any `aws-sdk-*` operation error: timeouts, dispatch failures and malformed
/// responses are transient; a service error is transient if its code is throttling-like or its
/// HTTP status is 5xx.
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
                retryable: TRANSIENT_CODES.contains(&code) || status >= 500,
            }
        }
        _ => transport("ConstructionFailure", false),
    }
}
