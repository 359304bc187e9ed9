//! Shared helpers: AWS clients pointed at moto with static test credentials, and
//! a small HTTP server. `ferry-lambda`'s tests include this module too (one copy).

#![allow(dead_code)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use ferry_aws::DynamoStore;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// The moto server of `scripts/testenv up`. Fails (never skips) when it is not configured.
pub fn moto_endpoint() -> String {
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        return url;
    }
    match std::env::var("FERRY_TEST_MOTO_PORT") {
        Ok(port) => format!("http://127.0.0.1:{port}"),
        Err(_) => panic!(
            "neither AWS_ENDPOINT_URL nor FERRY_TEST_MOTO_PORT is set: these tests need the moto server \
             started by `scripts/testenv up`; run `source <(scripts/testenv env)` first"
        ),
    }
}

/// An SDK configuration for an emulator at `endpoint`: region us-east-1, static test credentials.
pub async fn aws_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "ferry-tests",
        ))
        .load()
        .await
}

/// A store on a new, empty table.
pub async fn fresh_store(config: &SdkConfig) -> DynamoStore {
    let store = DynamoStore::new(config, ferry_testkit::unique_name("ferry_tasks"));
    store
        .ensure_table()
        .await
        .unwrap_or_else(|e| panic!("creating table {}: {e}", store.table()));
    store
}

pub mod http;
