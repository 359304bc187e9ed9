//! `ferry status TASK_ID --watch`: the status redrawn every 2 s, under it the
//! forward (and reverse) link's recent lag as a sparkline, from the samples the
//! incremental stage records in the task store.

use std::time::Duration;

use ferry_core::samples::{lag_points, Series};
use ferry_core::store::Repo;

use crate::cli::StatusArgs;
use crate::context::{Failure, Global};

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as block characters, scaled to the largest.
pub fn sparkline(values: &[u64], width: usize) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0).max(1);
    tail.iter()
        .map(|v| BLOCKS[((*v * 7) / max) as usize])
        .collect()
}

pub async fn run(global: &Global, args: StatusArgs) -> Result<u8, Failure> {
    let repo = Repo::new(global.existing_store()?);
    loop {
        print!("\x1b[2J\x1b[H");
        let once = StatusArgs {
            task_id: args.task_id.clone(),
            json: false,
            watch: false,
            cloud: Default::default(),
        };
        crate::cmd_status::run(global, once).await?;
        for series in [Series::Forward, Series::Reverse] {
            let lags: Vec<u64> = lag_points(&repo.samples(&args.task_id, series).await?)
                .into_iter()
                .map(|(_, l)| l)
                .collect();
            if let Some(last) = lags.last() {
                println!(
                    "\n{} lag, last {} samples: {}  now {last} ms, max {} ms",
                    series.as_str(),
                    lags.len().min(60),
                    sparkline(&lags, 60),
                    lags[lags.len().saturating_sub(60)..]
                        .iter()
                        .max()
                        .unwrap_or(&0)
                );
            }
        }
        println!("\n(redrawn every 2 s; Ctrl-C ends)");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn sparkline_scales_to_the_largest_of_the_window() {
        assert_eq!(sparkline(&[0, 50, 100], 10), "▁▄█");
        assert_eq!(sparkline(&[1000, 0, 7], 2), "▁█");
        assert_eq!(sparkline(&[], 5), "");
    }
}
