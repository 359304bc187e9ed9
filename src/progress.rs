//! Logging to stderr, and the live progress line `ferry run` shows while it
//! copies when stderr is a terminal.
//!
//! Invariant: the progress line is the last line on the terminal; every log
//! line and the final message first erase it, so the two never interleave.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::store::{ItemStore, Repo};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Whether a progress line may be on screen.
static LINE_SHOWN: AtomicBool = AtomicBool::new(false);

const DEFAULT_FILTER: &str =
    "warn,ferry=info,ferry_stages=info,ferry_local=info,ferry_mysql=info,ferry_asl=info";

/// Log to stderr, filtered by RUST_LOG (default: info for Ferry's crates, warn for the rest).
pub fn init_tracing() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(Stderr)
        .try_init();
}

/// Erase the progress line, if one is shown.
pub fn clear_line() {
    if LINE_SHOWN.swap(false, Ordering::SeqCst) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(b"\r\x1b[2K");
        let _ = err.flush();
    }
}

/// stderr for log lines: erases the progress line before each event.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = std::io::Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        clear_line();
        std::io::stderr()
    }
}

/// A running progress display; stops (and erases its line) when dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Poll the store about once a second and redraw the line, if stderr is a terminal.
    pub fn start<S: ItemStore>(repo: Repo<S>, task_id: String) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, handle: None };
        }
        let flag = Arc::clone(&stop);
        let handle = tokio::spawn(async move {
            let mut rate = Rate::default();
            while !flag.load(Ordering::SeqCst) {
                if let Ok(s) = repo.chunk_summary(&task_id).await {
                    if s.total > 0 && !flag.load(Ordering::SeqCst) {
                        let per_sec = rate.sample(s.rows);
                        draw(&format!(
                            "copying: {} rows, chunks {}/{} done{}, {per_sec:.0} rows/s",
                            s.rows,
                            s.done,
                            s.total,
                            if s.failed > 0 {
                                format!(" ({} failed)", s.failed)
                            } else {
                                String::new()
                            },
                        ));
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Progress {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.abort();
        }
        clear_line();
    }
}

fn draw(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{line}");
    let _ = err.flush();
    LINE_SHOWN.store(true, Ordering::SeqCst);
}

/// Rows per second over the last few samples.
#[derive(Default)]
struct Rate {
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl Rate {
    fn sample(&mut self, rows: u64) -> f64 {
        let now = Instant::now();
        self.samples.push_back((now, rows));
        while self.samples.len() > 10 {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some(&(t0, r0)) if now > t0 => {
                rows.saturating_sub(r0) as f64 / (now - t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}
