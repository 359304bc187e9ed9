//! Failpoints: named points where tests make the applier fail.

use super::*;

// ------------------------------------------------------------------ failpoints
// Named points where tests make the applier fail (FERRY_FAILPOINTS or set_failpoint). Compiled
// only with the `failpoints` feature, which every test build gets through ferry-testkit; without
// it (the release binary, the Lambda functions) `failpoint_for` is an inlined `Ok(())` and nothing
// reads the environment.

/// What a failpoint does when it fires.
#[cfg(feature = "failpoints")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// Return `Ferry.Transient("failpoint NAME")`, as a crash would end the call.
    Error,
    /// Panic (the task or process dies).
    Panic,
    /// Abort the whole process at once (no destructors, no COMMIT in flight finishes).
    Abort,
}

#[cfg(feature = "failpoints")]
pub(super) type FailTable = std::collections::HashMap<String, (FailAction, u64)>;

#[cfg(feature = "failpoints")]
pub(super) fn failpoints() -> &'static Mutex<FailTable> {
    static FP: OnceLock<Mutex<FailTable>> = OnceLock::new();
    FP.get_or_init(|| {
        // FERRY_FAILPOINTS="apply.after_commit=abort@3;ddl.after_exec=error"
        let mut t = FailTable::new();
        for part in std::env::var("FERRY_FAILPOINTS")
            .unwrap_or_default()
            .split(';')
        {
            let Some((name, spec)) = part.split_once('=') else {
                continue;
            };
            let (action, at) = spec.split_once('@').unwrap_or((spec, "1"));
            let action = match action {
                "panic" => FailAction::Panic,
                "abort" => FailAction::Abort,
                _ => FailAction::Error,
            };
            t.insert(name.trim().to_string(), (action, at.parse().unwrap_or(1)));
        }
        Mutex::new(t)
    })
}

/// Arm a failpoint to fire on its `nth` hit from now (1 = the next one); `None` disarms it.
#[cfg(feature = "failpoints")]
pub fn set_failpoint(name: &str, action: Option<(FailAction, u64)>) {
    let mut t = failpoints().lock().unwrap_or_else(|p| p.into_inner());
    match action {
        Some(a) => t.insert(name.to_string(), a),
        None => t.remove(name),
    };
}

/// A failpoint of one task: fires when `NAME` or `TASK/NAME` is armed.
#[cfg(feature = "failpoints")]
pub fn failpoint_for(task_id: &str, name: &str) -> Result<(), FerryError> {
    failpoint(&format!("{task_id}/{name}"))?;
    failpoint(name)
}

/// Without the `failpoints` feature no failpoint fires.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint_for(_task_id: &str, _name: &str) -> Result<(), FerryError> {
    Ok(())
}

/// A named point where tests can make the applier fail.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) -> Result<(), FerryError> {
    let action = {
        let mut t = failpoints().lock().unwrap_or_else(|p| p.into_inner());
        match t.get_mut(name) {
            Some((action, n)) if *n <= 1 => {
                let a = *action;
                t.remove(name);
                Some(a)
            }
            Some((_, n)) => {
                *n -= 1;
                None
            }
            None => None,
        }
    };
    match action {
        None => Ok(()),
        Some(FailAction::Error) => Err(FerryError::Transient(format!("failpoint {name}"))),
        Some(FailAction::Panic) => panic!("failpoint {name}"),
        Some(FailAction::Abort) => std::process::abort(),
    }
}
