//! ferry-lambda integration tests, one binary: the SAM template's cross-references,
//! each Lambda binary through the Lambda Runtime API, and the whole cloud path
//! (Step Functions in moto invoking the stages through a Lambda Invoke API
//! harness) against the real MariaDB servers and the real moto server.

mod common;

mod cloud_lifecycle;
mod cloud_path;
mod runtime_api;
mod template;
