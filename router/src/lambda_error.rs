//! The errors the Invoke API returns, shaped as AWS Lambda shapes them: an HTTP status, the
//! `x-amzn-ErrorType` header (which the AWS SDKs read to pick the exception class) and a JSON body
//! `{"Type": ..., "message": ...}`. Pure: building the HTTP response is the caller's job.

use serde_json::json;

/// Why an invocation was throttled. Lambda Managed Instances report exactly one per throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleReason {
    Concurrency,
    Cpu,
    Memory,
    Disk,
}

impl ThrottleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Concurrency => "Concurrency",
            Self::Cpu => "CPU",
            Self::Memory => "Memory",
            Self::Disk => "Disk",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LambdaError {
    /// Unknown function, version or alias (404).
    ResourceNotFound(String),
    /// The version exists but cannot run now: not Active, or no ready EE (502).
    ResourceNotReady(String),
    /// Every EE tried refused (429), with `Reason` and `Retry-After`.
    TooManyRequests {
        reason: ThrottleReason,
        retry_after_secs: u32,
    },
    /// Payload over 6 MB (413).
    RequestTooLarge,
    /// Payload is not JSON (400).
    InvalidRequestContent(String),
    /// A parameter is wrong: invocation type, qualifier (400).
    InvalidParameterValue(String),
    /// Asynchronous invocation, not implemented yet (400, with a message that says so).
    EventNotSupported,
    /// Unknown path or method (404 on the API level, as API Gateway-fronted AWS APIs answer).
    UnknownOperation,
    /// The EE could not be reached or broke the connection (502).
    EeUnreachable(String),
    /// Anything else on our side (500).
    Service(String),
    /// The caller is not authenticated (403, with the type and message AWS gives).
    Unauthenticated(crate::auth::AuthError),
    /// The caller may not invoke the function (403 `AccessDeniedException`).
    AccessDenied(String),
}

impl LambdaError {
    pub fn status(&self) -> u16 {
        match self {
            Self::ResourceNotFound(_) | Self::UnknownOperation => 404,
            Self::ResourceNotReady(_) | Self::EeUnreachable(_) => 502,
            Self::TooManyRequests { .. } => 429,
            Self::RequestTooLarge => 413,
            Self::InvalidRequestContent(_)
            | Self::InvalidParameterValue(_)
            | Self::EventNotSupported => 400,
            Self::Service(_) => 500,
            Self::Unauthenticated(e) => e.status(),
            Self::AccessDenied(_) => 403,
        }
    }

    /// The value of `x-amzn-ErrorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ResourceNotReady(_) => "ResourceNotReadyException",
            Self::TooManyRequests { .. } => "TooManyRequestsException",
            Self::RequestTooLarge => "RequestTooLargeException",
            Self::InvalidRequestContent(_) => "InvalidRequestContentException",
            Self::InvalidParameterValue(_) | Self::EventNotSupported => {
                "InvalidParameterValueException"
            }
            Self::UnknownOperation => "UnknownOperationException",
            // Lambda has no public type for "the EE went away"; the SDKs treat ServiceException as
            // retryable, which is what we want for a broken connection.
            Self::EeUnreachable(_) | Self::Service(_) => "ServiceException",
            Self::Unauthenticated(e) => e.error_type(),
            Self::AccessDenied(_) => "AccessDeniedException",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::ResourceNotFound(m)
            | Self::ResourceNotReady(m)
            | Self::InvalidRequestContent(m)
            | Self::InvalidParameterValue(m)
            | Self::Service(m)
            | Self::AccessDenied(m) => m.clone(),
            Self::Unauthenticated(e) => e.message(),
            Self::EeUnreachable(m) => {
                format!("The execution environment could not be reached: {m}")
            }
            Self::TooManyRequests { .. } => "Rate Exceeded.".to_string(),
            Self::RequestTooLarge => format!(
                "Request must be smaller than {} bytes for the InvokeFunction operation",
                crate::wire::MAX_SYNC_PAYLOAD
            ),
            Self::EventNotSupported => "InvocationType Event (asynchronous invocation) needs the \
                event queue, and this router runs without one (--nats-url); use RequestResponse \
                or DryRun"
                .to_string(),
            Self::UnknownOperation => "Unknown operation".to_string(),
        }
    }

    /// `Retry-After` header value, for throttles.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Self::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The JSON body. Lambda uses `Type` = `User` for caller-side errors and `Service` for its own.
    pub fn body(&self) -> Vec<u8> {
        let kind = if self.status() >= 500 {
            "Service"
        } else {
            "User"
        };
        let value = match self {
            Self::TooManyRequests {
                reason,
                retry_after_secs,
            } => json!({
                "Type": kind,
                "message": self.message(),
                "Reason": reason.as_str(),
                "retryAfterSeconds": retry_after_secs.to_string(),
            }),
            _ => json!({"Type": kind, "message": self.message()}),
        };
        value.to_string().into_bytes()
    }
}

/// The body Lambda returns (status 200, `X-Amz-Function-Error: Unhandled`) when an invocation times
/// out.
pub fn timeout_payload(request_id: &str, timeout_ms: u64) -> Vec<u8> {
    json!({
        "errorType": "Sandbox.Timedout",
        "errorMessage": format!(
            "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
            timeout_ms as f64 / 1000.0
        ),
    })
    .to_string()
    .into_bytes()
}

/// The body Lambda returns (status 200, `X-Amz-Function-Error: Unhandled`) when the runtime process
/// exits while an invocation runs: `reason` is [`exit_reason`] of its exit status, or
/// [`EXIT_WITHOUT_REASON`] when the status cannot be known (a pod's sidecar has no child to wait
/// for).
pub fn runtime_exit_payload(request_id: &str, reason: &str) -> Vec<u8> {
    json!({
        "errorType": RUNTIME_EXIT_ERROR,
        "errorMessage": format!("RequestId: {request_id} Error: {reason}"),
    })
    .to_string()
    .into_bytes()
}

/// The error type of an invocation whose runtime exited, and the EE's failure reason then.
pub const RUNTIME_EXIT_ERROR: &str = "Runtime.ExitError";

/// What Lambda says when the runtime exited and its status is unknown.
pub const EXIT_WITHOUT_REASON: &str = "Runtime exited without providing a reason";

/// Lambda's words for an exit status (its runtime manager is written in Go and prints Go's
/// `ProcessState`): `Runtime exited with error: exit status 3`, `... signal: killed`.
pub fn exit_reason(code: Option<i32>, signal: Option<i32>) -> String {
    let what = match (code, signal) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal: {}", signal_name(s)),
        (None, None) => return EXIT_WITHOUT_REASON.to_string(),
    };
    format!("Runtime exited with error: {what}")
}

/// Go's names of the Linux signals a runtime most often dies of.
fn signal_name(signal: i32) -> String {
    match signal {
        1 => "hangup".to_string(),
        2 => "interrupt".to_string(),
        3 => "quit".to_string(),
        4 => "illegal instruction".to_string(),
        6 => "aborted".to_string(),
        7 => "bus error".to_string(),
        8 => "floating point exception".to_string(),
        9 => "killed".to_string(),
        11 => "segmentation fault".to_string(),
        13 => "broken pipe".to_string(),
        15 => "terminated".to_string(),
        n => format!("signal {n}"),
    }
}

/// The body of a function error: the runtime's own JSON if it sent JSON (Lambda passes it through
/// unchanged), otherwise a JSON object built from the error type header and the raw text.
pub fn function_error_payload(error_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return body.to_vec();
    }
    json!({
        "errorType": error_type.unwrap_or("Runtime.Unknown"),
        "errorMessage": String::from_utf8_lossy(body),
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_types_match_lambda() {
        let cases = [
            (
                LambdaError::ResourceNotFound("x".into()),
                404,
                "ResourceNotFoundException",
            ),
            (
                LambdaError::ResourceNotReady("x".into()),
                502,
                "ResourceNotReadyException",
            ),
            (
                LambdaError::RequestTooLarge,
                413,
                "RequestTooLargeException",
            ),
            (
                LambdaError::InvalidRequestContent("x".into()),
                400,
                "InvalidRequestContentException",
            ),
            (
                LambdaError::EventNotSupported,
                400,
                "InvalidParameterValueException",
            ),
            (LambdaError::Service("x".into()), 500, "ServiceException"),
        ];
        for (e, status, ty) in cases {
            assert_eq!(e.status(), status, "{e:?}");
            assert_eq!(e.error_type(), ty, "{e:?}");
        }
    }

    #[test]
    fn throttle_body_has_reason_and_retry_after() {
        let e = LambdaError::TooManyRequests {
            reason: ThrottleReason::Cpu,
            retry_after_secs: 1,
        };
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&e.body()).expect("json");
        assert_eq!(v["Reason"], "CPU");
        assert_eq!(v["Type"], "User");
        assert_eq!(v["message"], "Rate Exceeded.");
    }

    #[test]
    fn timeout_payload_reads_like_lambda() {
        let v: serde_json::Value =
            serde_json::from_slice(&timeout_payload("abc", 1500)).expect("json");
        assert_eq!(v["errorType"], "Sandbox.Timedout");
        assert_eq!(
            v["errorMessage"],
            "RequestId: abc Error: Task timed out after 1.50 seconds"
        );
    }

    #[test]
    fn runtime_exit_reads_like_lambda() {
        let v: serde_json::Value =
            serde_json::from_slice(&runtime_exit_payload("abc", &exit_reason(Some(3), None)))
                .expect("json");
        assert_eq!(v["errorType"], "Runtime.ExitError");
        assert_eq!(
            v["errorMessage"],
            "RequestId: abc Error: Runtime exited with error: exit status 3"
        );
        assert_eq!(
            exit_reason(None, Some(9)),
            "Runtime exited with error: signal: killed"
        );
        assert_eq!(
            exit_reason(None, None),
            "Runtime exited without providing a reason"
        );
    }

    #[test]
    fn function_error_passes_json_through_and_wraps_text() {
        let j = br#"{"errorMessage":"boom","errorType":"ValueError"}"#;
        assert_eq!(function_error_payload(Some("X"), j), j.to_vec());
        let v: serde_json::Value =
            serde_json::from_slice(&function_error_payload(Some("X"), b"oops")).expect("json");
        assert_eq!(v["errorType"], "X");
        assert_eq!(v["errorMessage"], "oops");
    }
}
