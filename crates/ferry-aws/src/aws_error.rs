//! One classification of AWS SDK failures for every adapter: what is worth a
//! retry, and the service's error code for the rest. The SDK has already
//! retried throttling and 5xx answers by the time an error reaches this.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Error codes AWS services use for throttling and temporary trouble.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "LimitExceededException",
    "InternalServerError",
    "InternalFailure",
    "InternalServiceError",
    "ServiceUnavailable",
    "TransactionConflictException",
];

/// How an AWS call failed.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Worth retrying: network, timeout, throttling, a 5xx answer.
    pub transient: bool,
    /// The service's error code (`ResourceNotFoundException`, ...), if it answered.
    pub code: Option<String>,
    /// A readable description with the SDK's error chain (never a request body).
    pub text: String,
}

impl Failure {
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

pub(crate) fn classify<E>(err: &SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_string);
            let status = service.raw().status().as_u16();
            let transient = status >= 500
                || status == 429
                || code
                    .as_deref()
                    .is_some_and(|c| TRANSIENT_CODES.contains(&c));
            Failure {
                transient,
                code,
                text,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure {
                transient: true,
                code: None,
                text,
            }
        }
        _ => Failure {
            transient: false,
            code: None,
            text,
        },
    }
}
