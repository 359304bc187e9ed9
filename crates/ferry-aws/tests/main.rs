//! ferry-aws integration tests, one binary: the adapters (DynamoDB task store,
//! Secrets Manager) against the real moto server started by `scripts/testenv up`.
//! The Lambda functions and the whole cloud path are tested in `ferry-lambda`.

mod common;

mod dynamo_store;
mod secrets_manager;
