//! The entry point of every `functions/<stage>` binary: build the AWS adapters
//! (`ferry-aws`) once per cold start, then serve each invocation with the stage
//! handler (`ferry-stages`) until the Lambda deadline. A function's `main` is
//! one call: `ferry_lambda::run_stage("plan")`.
//!
//! Invariant: whatever goes wrong — a stage error, a missing `FERRY_TABLE`, an
//! unknown stage — the function answers the invocation with a
//! [`Diagnostic`] whose `error_type` is a stable `Ferry.*` name that the state
//! machine's Retry/Catch match; a Rust type name never reaches Step Functions,
//! and the function never panics at start-up. The adapters are built once per
//! cold start and reused by every invocation of the instance.

// The layout of the runtime loop's future (every stage's nested futures inside
// `service_fn`) needs more than the default query depth of 128.
#![recursion_limit = "256"]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_core::secret::SecretSource;
use ferry_core::store::{now_ms, ItemStore};
use ferry_core::FerryError;
use ferry_stages::StageEnv;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

use ferry_aws::{emf, load_config, DynamoStore, SecretsManagerSource, TABLE_ENV};

pub use lambda_runtime::Error;

/// Every function's allocator, the one the `ferry` binary runs the same stages
/// with: mimalloc without transparent huge pages (why: the root package's
/// manifest). Declared here, so each `functions/<stage>` binary links it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Time kept back from the Lambda deadline for the stage to write its
/// checkpoint and answer (at most a fifth of the time left).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// Deadline used when the invocation carries none (a local test).
const DEFAULT_BUDGET: Duration = Duration::from_secs(60);

/// The stage environment of a Lambda instance, or why it could not be built.
pub type LambdaEnv = Result<StageEnv<DynamoStore, SecretsManagerSource>, FerryError>;

/// Run the Lambda runtime loop for one stage. Never returns on success.
pub fn run_stage(stage: &'static str) -> Result<(), Error> {
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let env = Arc::new(cold_start(stage).await);
        if let Err(e) = env.as_ref() {
            tracing::error!(
                stage,
                error = e.name(),
                message = e.message(),
                "cold start failed"
            );
        }
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
            let env = Arc::clone(&env);
            async move { handle(env.as_ref(), stage, event).await }
        }))
        .await
    })
}

/// JSON logs, level from `RUST_LOG` or Lambda's `AWS_LAMBDA_LOG_LEVEL`, default `info`.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            EnvFilter::try_new(
                std::env::var("AWS_LAMBDA_LOG_LEVEL")
                    .unwrap_or_default()
                    .to_lowercase(),
            )
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Build the adapters from the environment: `FERRY_TABLE`, and the region and
/// credentials Lambda provides.
pub async fn cold_start(stage: &str) -> LambdaEnv {
    build_env(stage, std::env::var(TABLE_ENV).ok()).await
}

async fn build_env(stage: &str, table: Option<String>) -> LambdaEnv {
    if ferry_core::Stage::from_name(stage).is_none() {
        return Err(FerryError::Internal(format!(
            "this function runs stage \"{stage}\", which Ferry does not have"
        )));
    }
    let table = table.filter(|t| !t.is_empty()).ok_or_else(|| {
        FerryError::Store(format!(
            "environment variable {TABLE_ENV} is not set on the {stage} function; set it to the task table's name \
             (infra/template.yaml does)"
        ))
    })?;
    let config = load_config(None).await;
    Ok(StageEnv::new(
        DynamoStore::new(&config, table),
        SecretsManagerSource::new(&config),
        worker_id(stage),
    ))
}

/// Unique per Lambda instance: chunk leases are owned by it.
fn worker_id(stage: &str) -> String {
    let stream = std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_default();
    let stream = stream.rsplit(']').next().unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "lambda-{stage}-{stream}-{:x}{:05x}",
        now.as_millis(),
        std::process::id()
    )
}

/// One invocation: run the stage until its deadline, emit its metrics, map its error.
pub async fn handle<S: ItemStore, K: SecretSource>(
    env: &Result<StageEnv<S, K>, FerryError>,
    stage: &str,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let env = env.as_ref().map_err(diagnostic)?;
    let deadline = deadline(event.context.deadline);
    let result = ferry_stages::invoke(env, stage, event.payload, deadline).await;
    match result {
        Ok(output) => {
            if let Some(line) = emf::metrics_line(stage, &output, now_ms()) {
                // One write per line: CloudWatch reads each stdout line as one record.
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            Ok(output)
        }
        Err(e) => {
            tracing::warn!(
                stage,
                error = e.name(),
                message = e.message(),
                "stage failed"
            );
            Err(diagnostic(&e))
        }
    }
}

/// The instant a stage must be done by: the Lambda deadline (epoch ms) less a margin.
pub fn deadline(deadline_epoch_ms: u64) -> Instant {
    let now = Instant::now();
    if deadline_epoch_ms == 0 {
        return now + DEFAULT_BUDGET;
    }
    let left = Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms()));
    now + left - DEADLINE_MARGIN.min(left / 5)
}

/// The error as Step Functions sees it: `Ferry.*` name and message.
pub fn diagnostic(e: &FerryError) -> Diagnostic {
    Diagnostic {
        error_type: e.name().to_string(),
        error_message: e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_keeps_a_margin() {
        let before = Instant::now();
        let d = deadline(now_ms() + 100_000);
        let budget = d.duration_since(before);
        assert!(
            budget.abs_diff(Duration::from_secs(90)) < Duration::from_millis(50),
            "{budget:?}"
        );
        let short = deadline(now_ms() + 5_000).duration_since(before);
        assert!(
            short.abs_diff(Duration::from_secs(4)) < Duration::from_millis(50),
            "{short:?}"
        );
        assert!(deadline(0) > before + Duration::from_secs(59));
        assert!(
            deadline(1) <= Instant::now(),
            "a deadline in the past leaves no time"
        );
    }

    #[test]
    fn diagnostics_carry_stable_names() {
        let d = diagnostic(&FerryError::Fenced("lease lost".into()));
        assert_eq!(d.error_type, "Ferry.Fenced");
        assert_eq!(d.error_message, "lease lost");
    }

    #[tokio::test]
    async fn missing_table_is_a_named_error() {
        let e = build_env("plan", None)
            .await
            .err()
            .expect("no table configured");
        assert_eq!(e.name(), "Ferry.Store");
        assert!(e.message().contains("FERRY_TABLE"), "{e}");
        let e = build_env("no-such-stage", Some("t".into()))
            .await
            .err()
            .expect("unknown stage");
        assert_eq!(e.name(), "Ferry.Internal");
    }
}
