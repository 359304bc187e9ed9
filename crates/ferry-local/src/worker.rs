//! Who a local process is to the leases it takes: its worker id names the
//! process (`local-<pid>-<random>`), so a lease whose holder's process has
//! ended (`kill -9`, a closed terminal) can be taken over at once instead of
//! after `options.lease_seconds`.
//!
//! Invariant: [`holder_gone`] is true only for a holder that names a process
//! of this machine which no longer runs; any other holder (a Lambda's, one it
//! cannot read, this process) is left to its lease's time. Only stage
//! environments over the local store use it: the task store's file is read by
//! this machine's processes alone.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;

/// `local-<pid>-<random>`: unique per process, so leases name their owner.
pub fn worker_id() -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("local-{}-{:08x}", std::process::id(), random as u32)
}

/// Whether a lease `holder` (a [`worker_id`], maybe with a `#slot` after it)
/// names a process of this machine that has ended.
pub fn holder_gone(holder: &str) -> bool {
    let pid = holder
        .strip_prefix("local-")
        .and_then(|rest| rest.split(['-', '#']).next())
        .and_then(|pid| pid.parse::<u32>().ok());
    match pid {
        Some(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_ended_local_process_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let ended = child.id();
        child.wait().unwrap();
        assert!(holder_gone(&format!("local-{ended}-0000abcd#2")));
        assert!(holder_gone(&format!("local-{ended}-0000abcd")));
        assert!(!holder_gone(&worker_id()), "this process runs");
        assert!(!holder_gone(&format!("local-{}-x#0", std::process::id())));
        assert!(!holder_gone("lambda-2f9c#1"), "not a local process");
        assert!(!holder_gone("local-x-1#0"), "no pid in it");
        assert!(!holder_gone(""));
    }
}
