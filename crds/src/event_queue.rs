//! Where Event invocations are stored in NATS JetStream: names the router (which stores and
//! dispatches them) and the operator (which counts them per function) share.

/// The stream of events.
pub const STREAM: &str = "LMI_EVENTS";
/// Events are published to `lmi.events.<namespace>.<function>`.
pub const SUBJECT_PREFIX: &str = "lmi.events";

/// The subject of a function's events.
pub fn subject(namespace: &str, function: &str) -> String {
    format!("{SUBJECT_PREFIX}.{namespace}.{function}")
}

/// The namespace and function of an events subject.
pub fn function_of(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix(SUBJECT_PREFIX)?.strip_prefix('.')?;
    let (namespace, function) = rest.split_once('.')?;
    (!namespace.is_empty() && !function.is_empty() && !function.contains('.'))
        .then_some((namespace, function))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_names_its_function() {
        let s = subject("team-a", "orders");
        assert_eq!(s, "lmi.events.team-a.orders");
        assert_eq!(function_of(&s), Some(("team-a", "orders")));
        assert_eq!(function_of("lmi.events.team-a"), None);
        assert_eq!(function_of("other.team-a.orders"), None);
    }
}
