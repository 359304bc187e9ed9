//! When a stage call stops taking new work: the one rule every stage that
//! works until its deadline (copy, incremental apply, verify) shares.
//!
//! The deadline a stage receives is already the caller's (the Lambda deadline
//! less `ferry_lambda::DEADLINE_MARGIN`, or the embedded slice); the margin here
//! is the time the stage keeps for the unit of work in hand (a chunk, a batch)
//! to finish and be checkpointed after it stops claiming.

use std::time::{Duration, Instant};

/// Stop claiming this long before the deadline: max(5 s, 10% of the time given).
/// A deadline closer than the margin means stop at once (now).
pub fn stop_time(deadline: Instant) -> Instant {
    let now = Instant::now();
    let budget = deadline.saturating_duration_since(now);
    let margin = Duration::from_secs(5).max(budget / 10);
    deadline.checked_sub(margin).unwrap_or(now).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_at_least_five_seconds_or_a_tenth() {
        let now = Instant::now();
        let d = now + Duration::from_secs(100);
        let stop = stop_time(d);
        assert!(d - stop >= Duration::from_secs(10) - Duration::from_millis(50));
        let d = now + Duration::from_secs(20);
        assert!(d - stop_time(d) >= Duration::from_secs(5) - Duration::from_millis(50));
        // A deadline closer than the margin: stop at once.
        assert!(stop_time(now + Duration::from_secs(2)) <= Instant::now());
    }
}
