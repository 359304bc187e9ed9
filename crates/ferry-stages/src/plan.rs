//! The `plan` stage (being written).

use std::time::Instant;

use ferry_core::secret::SecretSource;
use ferry_core::store::ItemStore;
use ferry_core::FerryError;
use serde_json::Value;

use crate::StageEnv;

pub async fn run<S: ItemStore, K: SecretSource>(
    _env: &StageEnv<S, K>,
    _input: Value,
    _deadline: Instant,
) -> Result<Value, FerryError> {
    Err(FerryError::Internal("stage plan is not built yet".into()))
}
