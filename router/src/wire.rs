//! Names shared by the router and the sidecar on the router -> sidecar hop.
//!
//! The router forwards an invocation as `POST /invoke` with the Runtime API header names (the sidecar
//! copies them to the runtime), and the sidecar answers either with the function's result (status 200,
//! optional `X-Amz-Function-Error`) or with a refusal (status 429 and [`REFUSAL_REASON`]).
//!
//! The header names are [`HeaderName`]s made at compile time: a name given as a string is parsed,
//! and one outside HTTP's standard set copied to the heap, on every request that sets it.

use http::HeaderName;

/// Path of the sidecar's invoke endpoint.
pub const INVOKE_PATH: &str = "/invoke";
/// Header carrying the refusal reason (`Concurrency`, `CPU`, `Memory`, `Disk`, `Draining`, `NotReady`).
pub const REFUSAL_REASON: HeaderName = HeaderName::from_static("lmi-refusal-reason");
/// Header of the function error kind on a function result (`Unhandled`), as Lambda names it.
pub const FUNCTION_ERROR: HeaderName = HeaderName::from_static("x-amz-function-error");
/// Header of the function's invoke token, which the sidecar requires on `POST /invoke` when it has
/// one (see `lmi_crds::invoke_token`): only the router, which knows the cluster's key, has it.
pub const INVOKE_TOKEN: HeaderName =
    HeaderName::from_static(lmi_crds::invoke_token::INVOKE_TOKEN_HEADER);
/// Header of the pod's drain token, which the sidecar requires on `GET /drain` (the preStop hook).
pub const DRAIN_TOKEN: HeaderName =
    HeaderName::from_static(lmi_crds::invoke_token::DRAIN_TOKEN_HEADER);
/// Path of the sidecar's drain endpoint (the function container's preStop hook).
pub const DRAIN_PATH: &str = "/drain";

/// Set by the router's event dispatcher on an invocation taken from the event queue: the sidecar
/// admits it only into room that synchronous callers do not need.
pub const QUEUED_EVENT: HeaderName = HeaderName::from_static("lmi-queued-event");
/// How a runtime posts a streamed answer (`Lambda-Runtime-Function-Response-Mode: streaming`).
pub const RESPONSE_MODE: HeaderName =
    HeaderName::from_static("lambda-runtime-function-response-mode");
/// On the sidecar's answer to the router: the function streams its answer (chunked, errors in
/// the trailers).
pub const STREAMED: HeaderName = HeaderName::from_static("lmi-streamed");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("lambda-runtime-aws-request-id");
pub const DEADLINE_MS: HeaderName = HeaderName::from_static("lambda-runtime-deadline-ms");
pub const INVOKED_FUNCTION_ARN: HeaderName =
    HeaderName::from_static("lambda-runtime-invoked-function-arn");
pub const TRACE_ID: HeaderName = HeaderName::from_static("lambda-runtime-trace-id");
pub const CLIENT_CONTEXT: HeaderName = HeaderName::from_static("lambda-runtime-client-context");
pub const COGNITO_IDENTITY: HeaderName = HeaderName::from_static("lambda-runtime-cognito-identity");
pub const FUNCTION_ERROR_TYPE: HeaderName =
    HeaderName::from_static("lambda-runtime-function-error-type");

/// Largest synchronous request and response payload Lambda accepts (6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
