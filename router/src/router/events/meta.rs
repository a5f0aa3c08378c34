//! What travels with an event in its message headers: who it is for, when it was accepted, how
//! often the function has run it and when it may run next. The payload is the message body,
//! untouched.

use async_nats::HeaderMap;

const REQUEST_ID: &str = "Lmi-Request-Id";
const NAMESPACE: &str = "Lmi-Namespace";
const FUNCTION: &str = "Lmi-Function";
const QUALIFIER: &str = "Lmi-Qualifier";
const RECEIVED_MS: &str = "Lmi-Received-Ms";
const ATTEMPTS: &str = "Lmi-Attempts";
const NOT_BEFORE_MS: &str = "Lmi-Not-Before-Ms";
const TRACE_ID: &str = "Lmi-Trace-Id";
const RETRY_DELAYS_MS: &str = "Lmi-Retry-Delays-Ms";
/// JetStream's de-duplication id: a publish repeated after a lost acknowledgement is stored once.
const MSG_ID: &str = "Nats-Msg-Id";

/// One event's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// The id the caller got with the 202, and the id the function sees on every attempt.
    pub request_id: String,
    pub namespace: String,
    pub function: String,
    /// The qualifier as invoked (version or alias), resolved when the event runs; none for
    /// `$LATEST.PUBLISHED`.
    pub qualifier: Option<String>,
    /// When the router accepted the event (Unix ms): its age counts from here.
    pub received_ms: u64,
    /// Times the function has run it and failed (throttles and lost EEs are not counted).
    pub attempts: u32,
    /// Not to run before this time (Unix ms): the delay before a retry.
    pub not_before_ms: u64,
    pub trace_id: String,
    /// The delays before its retries, set by the router that accepted it: whichever replica
    /// runs an attempt, the event keeps the delays it was accepted with.
    pub retry_delays_ms: Vec<u64>,
}

impl EventMeta {
    pub fn to_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, self.request_id.as_str());
        h.insert(NAMESPACE, self.namespace.as_str());
        h.insert(FUNCTION, self.function.as_str());
        if let Some(q) = &self.qualifier {
            h.insert(QUALIFIER, q.as_str());
        }
        h.insert(RECEIVED_MS, self.received_ms.to_string().as_str());
        h.insert(ATTEMPTS, self.attempts.to_string().as_str());
        h.insert(NOT_BEFORE_MS, self.not_before_ms.to_string().as_str());
        h.insert(TRACE_ID, self.trace_id.as_str());
        let delays: Vec<String> = self.retry_delays_ms.iter().map(u64::to_string).collect();
        h.insert(RETRY_DELAYS_MS, delays.join(",").as_str());
        h.insert(
            MSG_ID,
            format!("{}/{}", self.request_id, self.attempts).as_str(),
        );
        h
    }

    /// The bookkeeping of a stored event, or what is missing.
    pub fn from_headers(h: Option<&HeaderMap>) -> Result<Self, String> {
        let h = h.ok_or("no headers")?;
        let text = |k: &str| -> Result<String, String> {
            h.get(k)
                .map(|v| v.as_str().to_string())
                .ok_or_else(|| format!("no {k} header"))
        };
        let number = |k: &str| -> Result<u64, String> {
            text(k)?.parse().map_err(|_| format!("{k} is not a number"))
        };
        Ok(Self {
            request_id: text(REQUEST_ID)?,
            namespace: text(NAMESPACE)?,
            function: text(FUNCTION)?,
            qualifier: text(QUALIFIER).ok(),
            received_ms: number(RECEIVED_MS)?,
            attempts: u32::try_from(number(ATTEMPTS)?).map_err(|e| e.to_string())?,
            not_before_ms: number(NOT_BEFORE_MS)?,
            trace_id: text(TRACE_ID)?,
            retry_delays_ms: text(RETRY_DELAYS_MS)
                .unwrap_or_default()
                .split(',')
                .filter_map(|d| d.trim().parse().ok())
                .collect(),
        })
    }

    /// The function as a name the router resolves: `namespace/function[:qualifier]`.
    pub fn function_name(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{}/{}:{q}", self.namespace, self.function),
            None => format!("{}/{}", self.namespace, self.function),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bookkeeping_round_trips_through_headers() {
        let meta = EventMeta {
            request_id: "r-1".to_string(),
            namespace: "team-a".to_string(),
            function: "orders".to_string(),
            qualifier: Some("live".to_string()),
            received_ms: 1_700_000_000_000,
            attempts: 1,
            not_before_ms: 1_700_000_060_000,
            trace_id: "Root=1-abc".to_string(),
            retry_delays_ms: vec![500, 1000],
        };
        let headers = meta.to_headers();
        assert_eq!(EventMeta::from_headers(Some(&headers)), Ok(meta.clone()));
        assert_eq!(
            headers.get(MSG_ID).map(|v| v.as_str().to_string()),
            Some("r-1/1".to_string())
        );
        assert_eq!(meta.function_name(), "team-a/orders:live");
        let unqualified = EventMeta {
            qualifier: None,
            ..meta
        };
        let back = EventMeta::from_headers(Some(&unqualified.to_headers()));
        assert_eq!(back.map(|m| m.function_name()), Ok("team-a/orders".into()));
        assert!(EventMeta::from_headers(None).is_err());
        assert!(EventMeta::from_headers(Some(&HeaderMap::new())).is_err());
    }
}
