//! Ferry's core: the task file, task metadata, binlog positions, errors and
//! the ports (traits) that the store and secrets adapters implement. No AWS
//! SDK and no database driver here.

pub mod error;
pub mod file;
pub mod model;
pub mod position;
pub mod samples;
pub mod secret;
pub mod stage;
pub mod store;
pub mod task;

pub use error::{FerryError, Result};
pub use stage::Stage;
