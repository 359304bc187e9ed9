//! Lambda function for Ferry's `copy-chunk` stage: builds the DynamoDB store and
//! Secrets Manager source once per cold start, then serves invocations from
//! Step Functions with `ferry_stages::invoke(env, "copy-chunk", input, deadline)`.
//! Errors reach the state machine as stable `Ferry.*` names.

fn main() -> Result<(), ferry_lambda::Error> {
    ferry_lambda::run_stage("copy-chunk")
}
