//! Time series of a task's throughput and lag, for the console's charts and
//! `ferry status --watch`.
//!
//! The copy stage adds one sample per chunk it finishes (rows of that chunk),
//! the incremental-apply stage one about every two seconds per link (row
//! changes applied since its previous sample, and the lag measured on the
//! source's clock). Samples are deltas, so several writers (parallel copy
//! workers) add to one series without reading each other's counters; rows/s is
//! derived by summing the deltas per time bucket ([`rows_per_second`]).
//!
//! Invariant: a series is one record (`sk = samples#<series>`) written with a
//! conditional write, so concurrent appends are never lost; it keeps at most
//! [`MAX_SAMPLES`] samples (the oldest go first), so the store stays small
//! however long a link runs (DynamoDB's item limit is 400 KB; 600 samples are
//! about 30 KB).

use serde::{Deserialize, Serialize};

use crate::error::FerryError;
use crate::model::Direction;
use crate::store::{ItemStore, Repo};

/// How many samples a series keeps.
pub const MAX_SAMPLES: usize = 600;

/// Which series: the full copy, or one of the two links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Series {
    Copy,
    Forward,
    Reverse,
}

impl Series {
    pub fn as_str(self) -> &'static str {
        match self {
            Series::Copy => "copy",
            Series::Forward => "forward",
            Series::Reverse => "reverse",
        }
    }

    pub fn link(dir: Direction) -> Series {
        match dir {
            Direction::Forward => Series::Forward,
            Direction::Reverse => Series::Reverse,
        }
    }

    pub const ALL: [Series; 3] = [Series::Copy, Series::Forward, Series::Reverse];

    fn key(self) -> String {
        format!("samples#{}", self.as_str())
    }
}

/// One observation: rows done since the writer's previous sample, and the lag then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub at_ms: u64,
    #[serde(default)]
    pub rows: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SeriesRecord {
    samples: Vec<Sample>,
}

impl<S: ItemStore> Repo<S> {
    /// Append a sample to a series, keeping it ordered by time and at most [`MAX_SAMPLES`] long.
    pub async fn add_sample(
        &self,
        task_id: &str,
        series: Series,
        sample: Sample,
    ) -> Result<(), FerryError> {
        self.swap_record(task_id, &series.key(), |cur: Option<SeriesRecord>| {
            let mut rec = cur.unwrap_or_default();
            let at = rec.samples.partition_point(|s| s.at_ms <= sample.at_ms);
            rec.samples.insert(at, sample);
            if rec.samples.len() > MAX_SAMPLES {
                let extra = rec.samples.len() - MAX_SAMPLES;
                rec.samples.drain(..extra);
            }
            Some(rec)
        })
        .await
        .map(|_| ())
    }

    /// A series' samples, oldest first (empty when none was recorded).
    pub async fn samples(&self, task_id: &str, series: Series) -> Result<Vec<Sample>, FerryError> {
        Ok(self
            .get_record::<SeriesRecord>(task_id, &series.key())
            .await?
            .map(|r| r.samples)
            .unwrap_or_default())
    }
}

/// Rows per second over time: the samples' rows summed per `bucket_ms` bucket,
/// as `(bucket start ms, rows/s)`, one point per bucket from the first sample
/// to the last (a bucket without samples is 0).
pub fn rows_per_second(samples: &[Sample], bucket_ms: u64) -> Vec<(u64, f64)> {
    let bucket_ms = bucket_ms.max(1);
    let (Some(first), Some(last)) = (
        samples.iter().map(|s| s.at_ms).min(),
        samples.iter().map(|s| s.at_ms).max(),
    ) else {
        return Vec::new();
    };
    let start = first - first % bucket_ms;
    let n = ((last - start) / bucket_ms + 1) as usize;
    let mut sums = vec![0u64; n];
    for s in samples {
        sums[((s.at_ms - start) / bucket_ms) as usize] += s.rows;
    }
    sums.iter()
        .enumerate()
        .map(|(i, rows)| {
            (
                start + i as u64 * bucket_ms,
                *rows as f64 * 1000.0 / bucket_ms as f64,
            )
        })
        .collect()
}

/// The lag points of a series: `(at ms, lag ms)` for each sample that measured one.
pub fn lag_points(samples: &[Sample]) -> Vec<(u64, u64)> {
    samples
        .iter()
        .filter_map(|s| s.lag_ms.map(|l| (s.at_ms, l)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: u64, rows: u64) -> Sample {
        Sample {
            at_ms,
            rows,
            lag_ms: None,
        }
    }

    #[test]
    fn rows_per_second_sums_each_bucket() {
        let pts = rows_per_second(&[s(1_000, 10), s(1_500, 30), s(4_200, 50)], 1_000);
        assert_eq!(
            pts,
            vec![(1_000, 40.0), (2_000, 0.0), (3_000, 0.0), (4_000, 50.0)]
        );
        let pts = rows_per_second(&[s(1_000, 10), s(2_999, 30)], 2_000);
        assert_eq!(pts, vec![(0, 5.0), (2_000, 15.0)]);
    }

    #[test]
    fn empty_series_has_no_points() {
        assert!(rows_per_second(&[], 1000).is_empty());
        assert!(lag_points(&[]).is_empty());
    }

    #[test]
    fn lag_points_skip_samples_without_lag() {
        let samples = [
            s(1, 5),
            Sample {
                at_ms: 2,
                rows: 0,
                lag_ms: Some(70),
            },
        ];
        assert_eq!(lag_points(&samples), vec![(2, 70)]);
    }
}
