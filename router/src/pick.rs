//! Choosing an execution environment: the power of two random choices on in-flight counts.
//! Pure: the caller supplies the loads, which EEs were already tried, and the random numbers.

/// Pick an EE among those not yet `tried`: draw two distinct candidates at random and keep the one
/// with fewer invocations in flight (the first on a tie). Returns `None` when all were tried.
pub fn power_of_two(loads: &[usize], tried: &[bool], r1: u64, r2: u64) -> Option<usize> {
    let open: Vec<usize> = (0..loads.len())
        .filter(|&i| !tried.get(i).copied().unwrap_or(false))
        .collect();
    match open.len() {
        0 => None,
        1 => Some(open[0]),
        n => {
            let a = (r1 % n as u64) as usize;
            // Second draw from the other n-1 so the two choices are distinct.
            let mut b = (r2 % (n as u64 - 1)) as usize;
            if b >= a {
                b += 1;
            }
            let (a, b) = (open[a], open[b]);
            Some(if loads[b] < loads[a] { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_exhausted() {
        assert_eq!(power_of_two(&[], &[], 1, 2), None);
        assert_eq!(power_of_two(&[0, 0], &[true, true], 1, 2), None);
    }

    #[test]
    fn single_open_candidate_is_taken() {
        assert_eq!(power_of_two(&[5, 0], &[false, true], 9, 9), Some(0));
    }

    #[test]
    fn keeps_the_less_loaded_of_the_two() {
        // r1 -> index 0, r2 -> index 1 of the remaining: compares EE 0 (load 5) and EE 1 (load 1).
        assert_eq!(power_of_two(&[5, 1, 0], &[false; 3], 0, 0), Some(1));
        // Tied loads keep the first draw.
        assert_eq!(power_of_two(&[2, 2], &[false; 2], 1, 0), Some(1));
    }

    #[test]
    fn never_picks_a_tried_one_and_spreads_over_all() {
        let loads = [0usize; 4];
        let tried = [false, true, false, false];
        let mut seen = [0usize; 4];
        let mut s = 42u64;
        for _ in 0..1000 {
            let (n1, r1) = crate::ids::splitmix64(s);
            let (n2, r2) = crate::ids::splitmix64(n1);
            s = n2;
            let i = power_of_two(&loads, &tried, r1, r2).expect("pick");
            seen[i] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!(seen[0] > 200 && seen[2] > 200 && seen[3] > 200, "{seen:?}");
    }
}

/// The one reason a 429 reports after every EE tried refused: the last throttle reason seen (the
/// freshest picture), or Concurrency when the EEs only refused for lifecycle reasons (draining, not
/// ready), which to a caller means the same thing: no capacity right now.
pub fn throttle_reason(
    refusals: &[crate::admission::Refusal],
) -> crate::lambda_error::ThrottleReason {
    refusals
        .iter()
        .rev()
        .find_map(|r| match r {
            crate::admission::Refusal::Throttle(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(crate::lambda_error::ThrottleReason::Concurrency)
}

#[cfg(test)]
mod reason_tests {
    use super::throttle_reason;
    use crate::admission::Refusal;
    use crate::lambda_error::ThrottleReason;

    #[test]
    fn last_throttle_reason_wins_lifecycle_maps_to_concurrency() {
        let r = [
            Refusal::Throttle(ThrottleReason::Cpu),
            Refusal::Throttle(ThrottleReason::Memory),
            Refusal::Draining,
        ];
        assert_eq!(throttle_reason(&r), ThrottleReason::Memory);
        assert_eq!(
            throttle_reason(&[Refusal::Draining, Refusal::NotReady]),
            ThrottleReason::Concurrency
        );
        assert_eq!(throttle_reason(&[]), ThrottleReason::Concurrency);
    }
}
