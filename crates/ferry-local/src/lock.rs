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
use std::time::{Duration, Instant};

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
        let path = lock_path(state_dir, task_id);
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
        let taken = try_flock(&file)
            .map_err(|err| FerryError::Store(format!("cannot lock {}: {err}", path.display())))?;
        if !taken {
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

    /// [`TaskLock::acquire`], retrying for up to `patience` while another
    /// process holds the lock: a liveness probe ([`TaskLock::is_held`], e.g.
    /// `ferry status` polled by a script) holds it for microseconds, and a
    /// runner starting at that instant must not fail for it. A runner that
    /// really works on the task holds it far longer and is still refused
    /// (`ferry release` waits here, longer, for a runner asked to stop).
    /// Waits without blocking the async runtime.
    pub async fn acquire_within(
        state_dir: &Path,
        task_id: &str,
        patience: Duration,
    ) -> Result<TaskLock, FerryError> {
        let deadline = Instant::now() + patience;
        loop {
            match TaskLock::acquire(state_dir, task_id) {
                Err(FerryError::Fenced(m)) if Instant::now() < deadline => {
                    tracing::debug!(message = %m, "waiting for the task's lock");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Whether a runner holds the task's lock now: probed by taking it for an
    /// instant (`LOCK_NB`) and letting go at once; nothing is written (the
    /// holder's pid in the file stays). A runner starting in that instant
    /// waits the probe out ([`TaskLock::acquire_within`]). No lock file:
    /// nothing ever ran.
    ///
    /// Not read from the kernel's lock table (`/proc/locks`, which lists
    /// holders without taking anything): the kernel builds that file under a
    /// write lock that waits for an RCU grace period, and reading it cost
    /// 6-16 ms here against 0.01 ms for the probe. That was an eighth of a
    /// `ferry verify --changed`, which asks this before it starts.
    pub fn is_held(state_dir: &Path, task_id: &str) -> Result<bool, FerryError> {
        let path = lock_path(state_dir, task_id);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(FerryError::Store(format!(
                    "cannot open the lock file {}: {e}",
                    path.display()
                )))
            }
        };
        // Taken: released when `file` closes, at once.
        try_flock(&file).map(|taken| !taken).map_err(|err| {
            FerryError::Store(format!("cannot test the lock {}: {err}", path.display()))
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<state dir>/<task>.lock`.
fn lock_path(state_dir: &Path, task_id: &str) -> PathBuf {
    state_dir.join(format!("{task_id}.lock"))
}

/// Take an exclusive `flock` on `file` without waiting: `Ok(false)` when
/// another open file description holds it. (std's `File::try_lock` does the
/// same from Rust 1.89; the workspace still builds with 1.85.)
fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a file descriptor `file` owns for the call; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(err),
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

    #[test]
    fn a_probe_neither_blocks_a_patient_runner_nor_erases_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!TaskLock::is_held(dir.path(), "t1").unwrap(), "no file yet");
        let runner = TaskLock::acquire(dir.path(), "t1").unwrap();
        assert!(TaskLock::is_held(dir.path(), "t1").unwrap());
        let pid = std::fs::read_to_string(runner.path()).unwrap();
        assert_eq!(
            pid,
            std::process::id().to_string(),
            "the probe wrote nothing"
        );
        drop(runner);
        assert!(!TaskLock::is_held(dir.path(), "t1").unwrap());

        // A probe holding the lock (as `ferry status` does for an instant) while a
        // runner starts: the runner waits it out instead of failing.
        let probe = TaskLock::acquire(dir.path(), "t1").unwrap();
        let d = dir.path().to_path_buf();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let starter = std::thread::spawn(move || {
            rt.block_on(TaskLock::acquire_within(&d, "t1", Duration::from_secs(5)))
                .map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(probe);
        starter
            .join()
            .unwrap()
            .expect("the runner got the lock once the probe let go");
        // A holder that stays is still refused, after the patience.
        let _held = TaskLock::acquire(dir.path(), "t1").unwrap();
        let t0 = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let e = rt
            .block_on(TaskLock::acquire_within(
                dir.path(),
                "t1",
                Duration::from_millis(200),
            ))
            .unwrap_err();
        assert_eq!(e.name(), "Ferry.Fenced");
        assert!(t0.elapsed() >= Duration::from_millis(200));
    }
}
