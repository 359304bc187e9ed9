//! Runner tests: each ASL construct run end to end against a fake Dispatch.

mod chain;
mod common;
mod context;
mod errors;
mod flow;
mod load;
mod map;
mod paths;
