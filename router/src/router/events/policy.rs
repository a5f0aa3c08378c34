//! What happens to an event, as Lambda decides it: run it when its time has come, retry a
//! function error after a delay (at most `maximumRetryAttempts` times), run a throttled or
//! undeliverable event again without counting it, and give up once it is older than
//! `maximumEventAgeInSeconds`. Pure: the dispatcher applies the decisions.

use std::time::Duration;

use lmi_crds::EventInvokeConfig;
use serde_json::{Value, json};

use super::meta::EventMeta;

/// Lambda's defaults: 2 retries, 6 hours.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
pub const DEFAULT_MAX_AGE_SECONDS: u64 = 21_600;
/// Lambda waits about a minute before the first retry and two before the second.
pub const DEFAULT_RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(120)];

/// One function's retry and age rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub max_retries: u32,
    pub max_age: Duration,
    /// The delay before retry n (1-based) is `retry_delays[n - 1]` (the last one repeats).
    pub retry_delays: Vec<Duration>,
    /// How long a throttled event waits before it is tried again.
    pub busy_delay: Duration,
}

impl Policy {
    /// The rules from a function's `eventInvokeConfig`, with the router's retry delays.
    pub fn of(
        config: Option<&EventInvokeConfig>,
        retry_delays: &[Duration],
        busy: Duration,
    ) -> Self {
        let max_retries = config
            .and_then(|c| c.maximum_retry_attempts)
            .map_or(DEFAULT_MAX_RETRIES, |n| n.clamp(0, 2).unsigned_abs());
        let max_age = config
            .and_then(|c| c.maximum_event_age_in_seconds)
            .map_or(DEFAULT_MAX_AGE_SECONDS, |s| u64::from(s.unsigned_abs()));
        Self {
            max_retries,
            max_age: Duration::from_secs(max_age),
            retry_delays: retry_delays.to_vec(),
            busy_delay: busy,
        }
    }

    fn retry_delay(&self, retry: u32) -> Duration {
        let i = usize::try_from(retry.saturating_sub(1)).unwrap_or(usize::MAX);
        self.retry_delays
            .get(i)
            .or(self.retry_delays.last())
            .copied()
            .unwrap_or_default()
    }
}

/// Why an event's handling ended (the destination record's `condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// How one run of the function went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The function answered without error.
    Success,
    /// The function answered with an error (`X-Amz-Function-Error`), or timed out.
    FunctionError,
    /// No EE took it (throttled, none ready, an EE lost before it ran): not the function's fault.
    Busy,
}

/// What to do with an event next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run it now.
    Run,
    /// Done: record the outcome at the destination for `condition` (if any), then remove it.
    Final(Condition),
    /// Store it again with one more attempt counted, to run after `delay`.
    Retry { attempts: u32, delay: Duration },
    /// Leave it queued, to be delivered again after `delay`; nothing counted.
    Later(Duration),
}

fn age(meta: &EventMeta, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(meta.received_ms))
}

/// Before running: too old, not yet, or run.
pub fn before_run(policy: &Policy, meta: &EventMeta, now_ms: u64) -> Next {
    if age(meta, now_ms) > policy.max_age {
        return Next::Final(Condition::EventAgeExceeded);
    }
    if meta.not_before_ms > now_ms {
        return Next::Later(Duration::from_millis(meta.not_before_ms - now_ms));
    }
    Next::Run
}

/// After a run.
pub fn after_run(policy: &Policy, meta: &EventMeta, outcome: &RunOutcome, now_ms: u64) -> Next {
    match outcome {
        RunOutcome::Success => Next::Final(Condition::Success),
        RunOutcome::FunctionError => {
            let attempts = meta.attempts + 1;
            if attempts > policy.max_retries {
                return Next::Final(Condition::RetriesExhausted);
            }
            let delay = policy.retry_delay(attempts);
            // A retry that would run past the event's maximum age is not made.
            if age(meta, now_ms) + delay > policy.max_age {
                return Next::Final(Condition::EventAgeExceeded);
            }
            Next::Retry { attempts, delay }
        }
        RunOutcome::Busy if age(meta, now_ms) + policy.busy_delay > policy.max_age => {
            Next::Final(Condition::EventAgeExceeded)
        }
        RunOutcome::Busy => Next::Later(policy.busy_delay),
    }
}

/// What the function answered, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub executed_version: u32,
    pub function_error: Option<String>,
    pub payload: Vec<u8>,
}

/// Lambda's invocation record, as a destination receives it.
pub fn record(
    condition: Condition,
    meta: &EventMeta,
    function_arn: &str,
    invoke_count: u32,
    request_payload: &[u8],
    response: Option<&Response>,
    timestamp: &str,
) -> Value {
    let mut record = json!({
        "version": "1.0",
        "timestamp": timestamp,
        "requestContext": {
            "requestId": meta.request_id,
            "functionArn": function_arn,
            "condition": condition.as_str(),
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": as_json(request_payload),
    });
    if let (Some(r), Some(map)) = (response, record.as_object_mut()) {
        let mut context =
            json!({"statusCode": 200, "executedVersion": r.executed_version.to_string()});
        if let (Some(e), Some(c)) = (&r.function_error, context.as_object_mut()) {
            c.insert("functionError".to_string(), Value::String(e.clone()));
        }
        map.insert("responseContext".to_string(), context);
        map.insert("responsePayload".to_string(), as_json(&r.payload));
    }
    record
}

/// A payload as JSON when it is JSON, else as a string (an empty one is null).
fn as_json(payload: &[u8]) -> Value {
    if payload.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(attempts: u32, received_ms: u64) -> EventMeta {
        EventMeta {
            request_id: "r".to_string(),
            namespace: "ns".to_string(),
            function: "f".to_string(),
            qualifier: None,
            received_ms,
            attempts,
            not_before_ms: 0,
            trace_id: "t".to_string(),
            retry_delays_ms: Vec::new(),
        }
    }

    fn policy() -> Policy {
        Policy::of(None, &DEFAULT_RETRY_DELAYS, Duration::from_secs(1))
    }

    #[test]
    fn the_defaults_are_lambdas() {
        let p = policy();
        assert_eq!((p.max_retries, p.max_age), (2, Duration::from_secs(21_600)));
        let config = EventInvokeConfig {
            maximum_retry_attempts: Some(0),
            maximum_event_age_in_seconds: Some(60),
            destination_config: None,
        };
        let p = Policy::of(Some(&config), &DEFAULT_RETRY_DELAYS, Duration::from_secs(1));
        assert_eq!((p.max_retries, p.max_age), (0, Duration::from_secs(60)));
    }

    #[test]
    fn a_function_error_is_retried_twice_after_one_then_two_minutes() {
        let p = policy();
        let now = 1_000_000;
        assert_eq!(
            after_run(&p, &meta(0, now), &RunOutcome::FunctionError, now),
            Next::Retry {
                attempts: 1,
                delay: Duration::from_secs(60)
            }
        );
        assert_eq!(
            after_run(&p, &meta(1, now), &RunOutcome::FunctionError, now),
            Next::Retry {
                attempts: 2,
                delay: Duration::from_secs(120)
            }
        );
        assert_eq!(
            after_run(&p, &meta(2, now), &RunOutcome::FunctionError, now),
            Next::Final(Condition::RetriesExhausted)
        );
        assert_eq!(
            after_run(&p, &meta(0, now), &RunOutcome::Success, now),
            Next::Final(Condition::Success)
        );
    }

    #[test]
    fn throttles_wait_uncounted_until_the_age_runs_out() {
        let p = Policy::of(
            Some(&EventInvokeConfig {
                maximum_event_age_in_seconds: Some(60),
                ..Default::default()
            }),
            &DEFAULT_RETRY_DELAYS,
            Duration::from_secs(1),
        );
        let received = 1_000_000;
        assert_eq!(
            after_run(&p, &meta(0, received), &RunOutcome::Busy, received + 10_000),
            Next::Later(Duration::from_secs(1))
        );
        assert_eq!(
            after_run(&p, &meta(0, received), &RunOutcome::Busy, received + 59_500),
            Next::Final(Condition::EventAgeExceeded)
        );
        // A retry a minute away would pass the 60 s age: given up.
        assert_eq!(
            after_run(
                &p,
                &meta(0, received),
                &RunOutcome::FunctionError,
                received + 1_000
            ),
            Next::Final(Condition::EventAgeExceeded)
        );
    }

    #[test]
    fn an_event_runs_once_its_delay_is_over_and_not_when_too_old() {
        let p = policy();
        let mut m = meta(1, 0);
        m.not_before_ms = 5_000;
        assert_eq!(
            before_run(&p, &m, 4_000),
            Next::Later(Duration::from_secs(1))
        );
        assert_eq!(before_run(&p, &m, 5_000), Next::Run);
        assert_eq!(
            before_run(&p, &m, 21_600_001),
            Next::Final(Condition::EventAgeExceeded)
        );
    }

    #[test]
    fn the_record_has_lambdas_shape() {
        let response = Response {
            executed_version: 3,
            function_error: Some("Unhandled".to_string()),
            payload: br#"{"errorMessage":"boom"}"#.to_vec(),
        };
        let r = record(
            Condition::RetriesExhausted,
            &meta(2, 0),
            "arn:aws:lambda:us-east-1:ns:function:f",
            3,
            br#"{"order":1}"#,
            Some(&response),
            "2026-12-01T20:00:00.000Z",
        );
        assert_eq!(r["version"], "1.0");
        assert_eq!(r["requestContext"]["requestId"], "r");
        assert_eq!(r["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(r["requestPayload"]["order"], 1);
        assert_eq!(r["responseContext"]["executedVersion"], "3");
        assert_eq!(r["responseContext"]["functionError"], "Unhandled");
        assert_eq!(r["responsePayload"]["errorMessage"], "boom");
        let aged = record(
            Condition::EventAgeExceeded,
            &meta(0, 0),
            "arn",
            0,
            b"not json",
            None,
            "t",
        );
        assert_eq!(aged["requestPayload"], "not json");
        assert!(aged.get("responseContext").is_none());
    }
}
