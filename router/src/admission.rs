//! The sidecar's admission decision: admit an invocation, or refuse it at once with one reason so
//! the router can try another EE. Pure; the sidecar feeds it the current measurements.

use crate::lambda_error::ThrottleReason;

/// Why the sidecar refused an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A throttle in Lambda's sense: the EE is full or under pressure.
    Throttle(ThrottleReason),
    /// The EE is shutting down (SIGTERM): in-flight work finishes, nothing new comes in.
    Draining,
    /// The runtime has not initialized (or failed to).
    NotReady,
    /// A queued event (InvocationType Event) while the EE has only the room it keeps for
    /// synchronous callers: the event stays queued. Not a throttle of any caller.
    EventDeferred,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttle(r) => r.as_str(),
            Self::Draining => "Draining",
            Self::NotReady => "NotReady",
            Self::EventDeferred => "EventDeferred",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Concurrency" => Self::Throttle(ThrottleReason::Concurrency),
            "CPU" => Self::Throttle(ThrottleReason::Cpu),
            "Memory" => Self::Throttle(ThrottleReason::Memory),
            "Disk" => Self::Throttle(ThrottleReason::Disk),
            "Draining" => Self::Draining,
            "NotReady" => Self::NotReady,
            "EventDeferred" => Self::EventDeferred,
            _ => return None,
        })
    }
}

/// Everything the decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    pub ready: bool,
    pub draining: bool,
    pub in_flight: usize,
    pub max_concurrency: usize,
    /// Smoothed CPU use of the function's processes over its CPU limit (0.0..), if measured.
    pub cpu_utilization: Option<f64>,
    /// Memory use of the function's processes over its memory limit (0.0..), if measured.
    pub memory_utilization: Option<f64>,
    /// The invocation is a queued event, which only takes room synchronous callers do not need.
    pub queued_event: bool,
}

/// The slots an EE keeps for synchronous callers, which queued events do not take: a quarter of
/// them (none below 4, so that an EE of 1-3 slots still runs events). A burst of events then
/// waits in the queue instead of making the EEs throttle the function's synchronous callers.
pub fn kept_for_synchronous(max_concurrency: usize) -> usize {
    max_concurrency / 4
}

/// Thresholds above which the EE counts as under pressure.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub cpu: f64,
    pub memory: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        // Leave headroom: at 90% of its CPU limit a function is already being throttled by the CFS
        // quota in bursts, and at 90% of memory the next invocation may push it into the OOM killer.
        Self {
            cpu: 0.9,
            memory: 0.9,
        }
    }
}

/// Admit or refuse. Order matters: lifecycle first (a draining EE must not look merely busy), then
/// memory (the most harmful to overrun), then concurrency, then CPU.
pub fn decide(i: &Inputs, t: &Thresholds) -> Result<(), Refusal> {
    if i.draining {
        return Err(Refusal::Draining);
    }
    if !i.ready {
        return Err(Refusal::NotReady);
    }
    if i.memory_utilization.is_some_and(|m| m >= t.memory) {
        return Err(Refusal::Throttle(ThrottleReason::Memory));
    }
    // An event finding no room it may take waits in its queue: deferred, not a throttle.
    if i.queued_event && i.in_flight + kept_for_synchronous(i.max_concurrency) >= i.max_concurrency
    {
        return Err(Refusal::EventDeferred);
    }
    if i.in_flight >= i.max_concurrency {
        return Err(Refusal::Throttle(ThrottleReason::Concurrency));
    }
    // Only refuse for CPU when something is already running: an idle EE with a CPU spike (e.g. from
    // background work) should still take work rather than turn every caller away.
    if i.in_flight > 0 && i.cpu_utilization.is_some_and(|c| c >= t.cpu) {
        return Err(Refusal::Throttle(ThrottleReason::Cpu));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Inputs {
        Inputs {
            ready: true,
            draining: false,
            in_flight: 0,
            max_concurrency: 8,
            cpu_utilization: Some(0.1),
            memory_utilization: Some(0.1),
            queued_event: false,
        }
    }

    #[test]
    fn admits_below_all_limits() {
        assert_eq!(decide(&base(), &Thresholds::default()), Ok(()));
        let i = Inputs {
            in_flight: 7,
            ..base()
        };
        assert_eq!(decide(&i, &Thresholds::default()), Ok(()));
    }

    #[test]
    fn refuses_at_concurrency_limit() {
        let i = Inputs {
            in_flight: 8,
            ..base()
        };
        assert_eq!(
            decide(&i, &Thresholds::default()),
            Err(Refusal::Throttle(ThrottleReason::Concurrency))
        );
    }

    #[test]
    fn refuses_under_memory_and_cpu_pressure() {
        let t = Thresholds::default();
        let i = Inputs {
            memory_utilization: Some(0.95),
            ..base()
        };
        assert_eq!(
            decide(&i, &t),
            Err(Refusal::Throttle(ThrottleReason::Memory))
        );
        let i = Inputs {
            cpu_utilization: Some(0.95),
            in_flight: 2,
            ..base()
        };
        assert_eq!(decide(&i, &t), Err(Refusal::Throttle(ThrottleReason::Cpu)));
        // Idle EE still admits despite CPU.
        let i = Inputs {
            cpu_utilization: Some(0.95),
            ..base()
        };
        assert_eq!(decide(&i, &t), Ok(()));
        // Unmeasured means no pressure.
        let i = Inputs {
            cpu_utilization: None,
            memory_utilization: None,
            in_flight: 3,
            ..base()
        };
        assert_eq!(decide(&i, &t), Ok(()));
    }

    #[test]
    fn lifecycle_comes_first() {
        let t = Thresholds::default();
        let i = Inputs {
            draining: true,
            in_flight: 8,
            ..base()
        };
        assert_eq!(decide(&i, &t), Err(Refusal::Draining));
        let i = Inputs {
            ready: false,
            ..base()
        };
        assert_eq!(decide(&i, &t), Err(Refusal::NotReady));
    }

    #[test]
    fn queued_events_leave_a_quarter_of_the_slots_to_synchronous_callers() {
        let t = Thresholds::default();
        let event = |in_flight, max_concurrency| Inputs {
            in_flight,
            max_concurrency,
            queued_event: true,
            ..base()
        };
        // 8 slots: events take 6, the last 2 are for synchronous callers.
        assert_eq!(decide(&event(5, 8), &t), Ok(()));
        assert_eq!(decide(&event(6, 8), &t), Err(Refusal::EventDeferred));
        let sync = Inputs {
            in_flight: 6,
            ..base()
        };
        assert_eq!(decide(&sync, &t), Ok(()));
        // At a full EE too the event waits; only callers are throttled.
        assert_eq!(decide(&event(8, 8), &t), Err(Refusal::EventDeferred));
        // Small EEs still run events.
        assert_eq!(decide(&event(0, 1), &t), Ok(()));
        assert_eq!(decide(&event(2, 3), &t), Ok(()));
        assert_eq!(decide(&event(63, 64), &t), Err(Refusal::EventDeferred));
        assert_eq!(decide(&event(47, 64), &t), Ok(()));
    }

    #[test]
    fn reasons_round_trip() {
        for r in [
            Refusal::Draining,
            Refusal::NotReady,
            Refusal::EventDeferred,
            Refusal::Throttle(ThrottleReason::Cpu),
            Refusal::Throttle(ThrottleReason::Disk),
        ] {
            assert_eq!(Refusal::parse(r.as_str()), Some(r));
        }
        assert_eq!(Refusal::parse("nope"), None);
    }
}
