//! Logging to stderr, and the live progress display `ferry run` shows when
//! stderr is a terminal (indicatif): the stage and totals on the first line
//! (`copying: N rows, chunks d/t done, R rows/s, ETA`), one bar per table with
//! percent, rows and ETA during the copy, and lag and rows/s of the link during
//! the sync.
//!
//! On a terminal the logs are at WARN unless `-v` or RUST_LOG asks for more
//! (the display tells what happens); when stderr is not a terminal, the full
//! INFO logs. Invariant: a log line is written with the bars suspended, so the
//! two never interleave.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ferry_core::model::{ChunkState, Direction};
use ferry_core::samples::Series;
use ferry_core::store::{now_ms, ItemStore, Repo};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The display, while one is shown (log lines suspend it).
static BARS: OnceLock<MultiProgress> = OnceLock::new();

const INFO_FILTER: &str =
    "warn,ferry=info,ferry_stages=info,ferry_local=info,ferry_mysql=info,ferry_asl=info";
const DEBUG_FILTER: &str =
    "warn,ferry=debug,ferry_stages=debug,ferry_local=debug,ferry_mysql=debug,ferry_asl=debug";

/// Log to stderr, filtered by RUST_LOG; else WARN on a terminal (INFO with `-v`, DEBUG with
/// `-vv`), INFO for Ferry's crates when stderr is not a terminal.
pub fn init_tracing_verbose(verbose: u8) {
    let terminal = std::io::stderr().is_terminal();
    let default = match (terminal, verbose) {
        (_, v) if v >= 2 => DEBUG_FILTER,
        (true, 0) => "warn",
        _ => INFO_FILTER,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(Stderr)
        .try_init();
}

/// Erase the display, if one is shown (before a final message).
pub fn clear_line() {
    if let Some(mp) = BARS.get() {
        let _ = mp.clear();
    }
}

/// stderr for log lines: each event is written in one piece with the bars suspended.
struct Stderr;

struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let out = |buf: &[u8]| {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(buf);
            let _ = err.flush();
        };
        match BARS.get() {
            Some(mp) => mp.suspend(|| out(&self.0)),
            None => out(&self.0),
        }
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(Vec::new())
    }
}

/// A running progress display; stops (and erases itself) when dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

fn table_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "  {prefix:<32!} [{bar:30.cyan/blue}] {percent:>3}% {human_pos}/{human_len} rows  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

impl Progress {
    /// Poll the store about once a second and redraw, if stderr is a terminal.
    pub fn start<S: ItemStore>(repo: Repo<S>, task_id: String) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, handle: None };
        }
        let mp = BARS
            .get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)))
            .clone();
        let flag = Arc::clone(&stop);
        let handle = tokio::spawn(async move {
            let head = mp.add(ProgressBar::new_spinner());
            head.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let mut tables: BTreeMap<String, ProgressBar> = BTreeMap::new();
            let mut rate = Rate::default();
            let started = Instant::now();
            while !flag.load(Ordering::SeqCst) {
                let stage = repo
                    .get_task(&task_id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|t| t.stage)
                    .unwrap_or_else(|| "starting".into());
                let chunks = repo.chunks(&task_id).await.unwrap_or_default();
                let estimates: BTreeMap<String, u64> = repo
                    .tables(&task_id)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (t.source_name(), t.rows_estimate))
                    .collect();
                let mut per: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
                for c in &chunks {
                    let e = per.entry(c.table_name()).or_default();
                    e.1 += 1;
                    if c.state == ChunkState::Done {
                        e.0 += 1;
                        e.2 += c.rows;
                    }
                }
                let (done, total, rows) = per
                    .values()
                    .fold((0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
                let per_sec = rate.sample(rows);
                let mut line = format!("stage {stage}");
                if total > 0 {
                    let left: u64 = per
                        .iter()
                        .map(|(t, v)| estimates.get(t).copied().unwrap_or(0).saturating_sub(v.2))
                        .sum();
                    let eta = if done < total && per_sec > 0.0 {
                        format!(", ETA {}", secs(left as f64 / per_sec))
                    } else {
                        String::new()
                    };
                    line.push_str(&format!(
                        " · copying: {rows} rows, chunks {done}/{total} done, {per_sec:.0} rows/s{eta}"
                    ));
                }
                if let Ok(Some(ck)) = repo.checkpoint(&task_id, Direction::Forward).await {
                    if !ck.is_retired() {
                        let recent = repo
                            .samples(&task_id, Series::Forward)
                            .await
                            .unwrap_or_default();
                        let window: Vec<_> = recent
                            .iter()
                            .filter(|s| s.at_ms + 10_000 >= now_ms())
                            .collect();
                        let applied: u64 = window.iter().map(|s| s.rows).sum();
                        let lag = ck
                            .lag_ms
                            .map(|l| format!("{l} ms"))
                            .unwrap_or_else(|| "not measured".into());
                        line.push_str(&format!(
                            " · sync: lag {lag}, {:.0} rows/s, {} applied",
                            applied as f64 / 10.0,
                            ck.applied_rows
                        ));
                    }
                }
                head.set_message(line);
                head.tick();
                for (t, (d, n, r)) in &per {
                    let bar = tables.entry(t.clone()).or_insert_with(|| {
                        let b = mp.add(ProgressBar::new(0));
                        b.set_style(table_style());
                        b.set_prefix(t.clone());
                        b
                    });
                    let est = estimates.get(t).copied().unwrap_or(0).max(*r);
                    bar.set_length(est.max(1));
                    bar.set_position(*r);
                    let msg = if d == n {
                        "done".to_string()
                    } else {
                        let elapsed = started.elapsed().as_secs_f64();
                        let eta = if *r > 0 && elapsed > 0.0 {
                            format!(
                                ", ETA {}",
                                secs(est.saturating_sub(*r) as f64 / (*r as f64 / elapsed))
                            )
                        } else {
                            String::new()
                        };
                        format!("chunks {d}/{n}{eta}")
                    };
                    bar.set_message(msg);
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

fn secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
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

#[cfg(test)]
mod tests {
    use super::secs;

    #[test]
    fn eta_reads_as_a_person_writes_it() {
        assert_eq!(secs(42.4), "42s");
        assert_eq!(secs(125.0), "2m05s");
        assert_eq!(secs(7322.0), "2h02m");
    }
}
