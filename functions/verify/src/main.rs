//! Lambda function for Ferry's `verify` stage: builds the DynamoDB store and
//! Secrets Manager source once per cold start, then serves invocations from
//! Step Functions with `ferry_stages::invoke(env, "verify", input, deadline)`.
//! Several instances may verify one run at once (per-chunk verify leases).
//! Errors reach the state machine as stable `Ferry.*` names.

fn main() -> Result<(), ferry_lambda::Error> {
    ferry_lambda::run_stage("verify")
}
