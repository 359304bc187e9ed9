//! `ferry precheck TASK.json`: the grant-check stage alone, and its report.

use std::time::{Duration, Instant};

use ferry_core::FerryError;
use serde_json::Value;

use crate::cli::TaskFileArgs;
use crate::context::{read_task_file, Failure, Global, EXIT_PRECHECK};

pub async fn run(global: &Global, args: TaskFileArgs) -> Result<u8, Failure> {
    let (spec, input) = read_task_file(&args.task)?;
    let env = global.stage_env(&spec)?;
    let deadline = Instant::now() + Duration::from_secs(spec.options.slice_seconds);
    let out =
        ferry_stages::invoke_stage(&env, ferry_core::Stage::GrantCheck, input, deadline).await?;
    let report = env.repo.task(&spec.task_id).await?.precheck;
    match report {
        Some(r) => print!("{}", r.render()),
        None => println!("{out}"),
    }
    let ok = out.get("ok").and_then(Value::as_bool).ok_or_else(|| {
        FerryError::Internal(format!(
            "the grant-check stage returned no \"ok\" field: {out}"
        ))
    })?;
    if ok {
        println!("precheck of task {} passed", spec.task_id);
        Ok(0)
    } else {
        println!(
            "precheck of task {} FAILED: fix the items marked FAIL and run it again",
            spec.task_id
        );
        Ok(EXIT_PRECHECK)
    }
}
