//! Ferry's AWS adapters: the DynamoDB task store ([`DynamoStore`]), database
//! secrets from Secrets Manager ([`SecretsManagerSource`]), the Step Functions
//! client the CLI uses ([`StepFunctions`]) and CloudWatch metrics in the
//! embedded metric format ([`emf`]). Adapters only: the Lambda entry point that
//! runs the stages over them is the `ferry-lambda` crate.
//!
//! Invariant: every AWS failure leaves this crate as a [`ferry_core::FerryError`]
//! with a stable name — throttling, 5xx and network errors as
//! `Ferry.Transient` (after the SDK's own retries), everything else as a
//! definite error naming the resource and the fix. No secret value ever
//! appears in an error or a log line.

mod aws_error;
pub mod dynamo;
pub mod emf;
pub mod secrets;
pub mod sfn;

pub use dynamo::DynamoStore;
pub use secrets::SecretsManagerSource;
pub use sfn::{ExecutionInfo, StepFunctions};

pub use aws_config::SdkConfig;

use aws_config::BehaviorVersion;

/// The environment variable naming the DynamoDB task table.
pub const TABLE_ENV: &str = "FERRY_TABLE";

/// The AWS configuration from the environment (region, credentials,
/// `AWS_ENDPOINT_URL`), optionally pointed at another endpoint (an emulator).
pub async fn load_config(endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
