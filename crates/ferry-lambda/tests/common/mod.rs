//! Shared helpers. The AWS ones (moto clients with static test credentials, a
//! small HTTP server) are ferry-aws's test helpers, included from there so one
//! copy serves both crates; the lab (Step Functions in moto invoking the stages)
//! and the SAM template reader are this crate's.

#![allow(dead_code)]

#[path = "../../../ferry-aws/tests/common/mod.rs"]
mod aws;

pub use aws::*;

pub mod lab;
pub mod sam;
