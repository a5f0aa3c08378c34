//! Progress a person can read while a slow step runs: one line a minute with the time so far and
//! what the step usually takes here, so a first `up` (Go and Cargo builds, images) never sits
//! silent for minutes, and a CI log gets a line a minute, not a flood.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

/// How often a running step says it still runs.
const PERIOD: Duration = Duration::from_secs(60);

/// Runs `work`, logging `step` with the time so far every minute until it ends; `typical` is what
/// the step takes on this project's 2-core machine, when known.
pub async fn heartbeat<F: Future>(step: &str, typical: Option<Duration>, work: F) -> F::Output {
    let started = Instant::now();
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval_at(started + PERIOD, PERIOD);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => info!("{}", still_running(step, started.elapsed(), typical)),
        }
    }
}

/// "still building kubernetes: 3m00s so far (usually about 14 min here, so about 11 min to go)".
pub fn still_running(step: &str, elapsed: Duration, typical: Option<Duration>) -> String {
    let so_far = minutes_seconds(elapsed);
    match typical {
        Some(typical) if typical > elapsed => {
            let to_go = (typical - elapsed).as_secs().div_ceil(60);
            format!(
                "still {step}: {so_far} so far (usually about {} min here, so about {to_go} min to go)",
                typical.as_secs().div_ceil(60)
            )
        }
        Some(typical) => format!(
            "still {step}: {so_far} so far (longer than the usual {} min here; a busy machine is slower)",
            typical.as_secs().div_ceil(60)
        ),
        None => format!("still {step}: {so_far} so far"),
    }
}

fn minutes_seconds(d: Duration) -> String {
    format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_the_time_so_far_and_what_remains() {
        let min = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(
            still_running("building kubernetes", min(3), Some(min(14))),
            "still building kubernetes: 3m00s so far (usually about 14 min here, so about 11 min to go)"
        );
        assert!(
            still_running("x", min(20), Some(min(14))).contains("longer than the usual 14 min")
        );
        assert_eq!(
            still_running("x", Duration::from_secs(61), None),
            "still x: 1m01s so far"
        );
    }
}
