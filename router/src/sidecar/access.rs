//! Who may invoke the function and drain the EE through the sidecar's pod-facing port, which
//! anything that reaches the pod network can connect to (see docs/security.md).
//!
//! - Invoke needs the function's invoke token (`x-lmi-invoke-token`), which only the router
//!   derives (from the cluster's key) and the EE's sidecar gets (from the function's Secret).
//! - Drain needs the pod's drain token (`x-lmi-drain-token`), which only the preStop hook sends.
//!
//! Without a token (a sidecar started as a plain process: local runs, the router's tests), invoke
//! is open; drain is open only when the sidecar runs the function itself (a local run), since a
//! pod's sidecar without a drain token was not made by this operator and must not be stopped by
//! anyone who can reach it.

use http::{HeaderMap, HeaderName};
use lmi_crds::invoke_token::tokens_match;

/// A token the sidecar compares a header against. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// Whether header `name` of `headers` carries this token (compared in constant time).
    pub fn matches(&self, headers: &HeaderMap, name: &HeaderName) -> bool {
        headers
            .get(name)
            .is_some_and(|v| tokens_match(self.0.as_bytes(), v.as_bytes()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What a route asks of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// The header must carry this token.
    Token(Token),
    /// Anyone (a local run without tokens).
    Open,
    /// No one (a pod's sidecar without a drain token).
    Closed,
}

impl Gate {
    pub fn admits(&self, headers: &HeaderMap, header: &HeaderName) -> bool {
        match self {
            Gate::Token(t) => t.matches(headers, header),
            Gate::Open => true,
            Gate::Closed => false,
        }
    }
}

/// The gates of the two routes that act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub invoke: Gate,
    pub drain: Gate,
}

impl Access {
    /// `local`: the sidecar starts the function itself (not a pod's sidecar).
    pub fn new(invoke: Option<Token>, drain: Option<Token>, local: bool) -> Self {
        Self {
            invoke: invoke.map_or(Gate::Open, Gate::Token),
            drain: match drain {
                Some(t) => Gate::Token(t),
                None if local => Gate::Open,
                None => Gate::Closed,
            },
        }
    }

    /// What to warn about at start: a gate that is not a token.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut w = Vec::new();
        if self.invoke == Gate::Open {
            w.push(
                "LMI_INVOKE_TOKEN is not set: anyone who reaches this port can invoke the function",
            );
        }
        match self.drain {
            Gate::Open => w.push(
                "LMI_DRAIN_TOKEN is not set: anyone who reaches this port can drain this EE (local run)",
            ),
            Gate::Closed => w.push(
                "LMI_DRAIN_TOKEN is not set: GET /drain is refused, so the preStop hook cannot hold the function's SIGTERM",
            ),
            Gate::Token(_) => {}
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const X_T: HeaderName = HeaderName::from_static("x-t");

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn a_token_gate_admits_only_the_token_in_its_header() {
        let gate = Gate::Token(Token::new("secret".into()));
        assert!(gate.admits(&headers(&[("x-t", "secret")]), &X_T));
        assert!(!gate.admits(&headers(&[("x-t", "secreT")]), &X_T));
        assert!(!gate.admits(&headers(&[("x-t", "secret2")]), &X_T));
        assert!(!gate.admits(&headers(&[("x-other", "secret")]), &X_T));
        assert!(!gate.admits(&headers(&[]), &X_T));
    }

    #[test]
    fn without_tokens_invoke_is_open_and_drain_only_for_a_local_run() {
        let local = Access::new(None, None, true);
        assert_eq!(
            (local.invoke.clone(), local.drain.clone()),
            (Gate::Open, Gate::Open)
        );
        assert_eq!(local.warnings().len(), 2);
        let pod = Access::new(None, None, false);
        assert_eq!(pod.drain, Gate::Closed);
        assert!(!pod.drain.admits(&headers(&[]), &X_T));
        let t = Token::new("t".into());
        let protected = Access::new(Some(t.clone()), Some(t.clone()), false);
        assert!(protected.warnings().is_empty());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }
}
