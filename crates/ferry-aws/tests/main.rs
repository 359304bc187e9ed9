//! ferry-aws integration tests, one binary: the adapters against the real moto
//! server started by `scripts/testenv up`, the SAM template's cross-references,
//! each Lambda binary through the Lambda Runtime API, and the whole cloud path
//! (Step Functions in moto invoking the stages through a Lambda Invoke API
//! harness) against the real MariaDB servers.

mod common;

mod cloud_lifecycle;
mod cloud_path;
mod dynamo_store;
mod runtime_api;
mod secrets_manager;
mod template;
