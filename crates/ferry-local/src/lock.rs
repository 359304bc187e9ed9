//! One embedded runner per task: an exclusive `flock` on `<state dir>/<task>.lock`.
//!
//! Invariant: while a [`TaskLock`] lives, no other process holds the lock of the
//! same task, so every chunk marked running in the store belongs to this process
//! or to one that died. The kernel releases the lock when the process exits,
//! however it exits (SIGKILL included), so a stale lock file never blocks a rerun.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ferry_core::FerryError;

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct TaskLock {
    _file: File,
    path: PathBuf,
}

impl TaskLock {
    /// Take the lock of `task_id` in `state_dir`, or fail at once naming the holder's pid.
    pub fn acquire(state_dir: &Path, task_id: &str) -> Result<TaskLock, FerryError> {
        let path = state_dir.join(format!("{task_id}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                FerryError::Store(format!(
                    "cannot open the lock file {}: {e}. Check that --state-dir is writable.",
                    path.display()
                ))
            })?;
        // SAFETY: flock on a file descriptor this function owns; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                };
                return Err(FerryError::Fenced(format!(
                    "task \"{task_id}\" is already being run by another `ferry run`{who}, which holds {}. \
                     Wait for it to finish or stop it; only one embedded runner may work on a task.",
                    path.display()
                )));
            }
            return Err(FerryError::Store(format!(
                "cannot lock {}: {err}",
                path.display()
            )));
        }
        // The pid is only informative, for the message above.
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| {
                write!(file, "{}", std::process::id())?;
                file.flush()
            });
        Ok(TaskLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let first = TaskLock::acquire(dir.path(), "t1").unwrap();
        // flock locks belong to the open file description: a second open in the same
        // process conflicts just as another process would.
        let e = TaskLock::acquire(dir.path(), "t1").unwrap_err();
        assert_eq!(e.name(), "Ferry.Fenced");
        assert!(e.message().contains("t1.lock"), "{e}");
        assert!(
            e.message().contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        let other = TaskLock::acquire(dir.path(), "t2").unwrap();
        drop(first);
        let again = TaskLock::acquire(dir.path(), "t1").unwrap();
        assert!(again.path().ends_with("t1.lock"));
        drop(other);
    }
}
