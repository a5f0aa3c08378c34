//! The `FunctionName` of the Invoke API, in every form the AWS CLI and SDKs send, mapped to a
//! Kubernetes namespace and function name.
//!
//! Accepted forms (the SDKs percent-encode the path segment; [`percent_decode`] undoes it):
//!
//! | form | namespace | name | qualifier |
//! |---|---|---|---|
//! | `NAME` | default | NAME | from `?Qualifier=` |
//! | `NAME:QUALIFIER` | default | NAME | QUALIFIER |
//! | `NAMESPACE/NAME[:QUALIFIER]` | NAMESPACE | NAME | ... |
//! | `ACCOUNT:function:NAME[:QUALIFIER]` (partial ARN) | ACCOUNT | NAME | ... |
//! | `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]` | ACCOUNT | NAME | ... |
//!
//! The account field of an ARN names the namespace; a 12-digit AWS account id stands for the router's
//! default namespace, so ARNs copied from tooling with a real-looking account still work.

use crate::lambda_error::LambdaError;

/// Which version of a function an invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Qualifier {
    /// `$LATEST.PUBLISHED` (also no qualifier, and `$LATEST`: functions on managed instances only
    /// run published versions, so `$LATEST` is treated as the latest published one).
    LatestPublished,
    Version(u32),
    /// An alias name (a FunctionAlias; an unknown one resolves to "not found").
    Alias(String),
}

impl Qualifier {
    pub fn parse(s: &str) -> Result<Self, LambdaError> {
        match s {
            "$LATEST.PUBLISHED" | "$LATEST" => Ok(Self::LatestPublished),
            _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<u32>()
                .map(Self::Version)
                .map_err(|_| invalid(format!("Version number out of range: {s}"))),
            _ if valid_alias(s) => Ok(Self::Alias(s.to_string())),
            _ => Err(invalid_field("qualifier", s, QUALIFIER_PATTERN)),
        }
    }
}

/// A parsed `FunctionName` plus qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub namespace: String,
    pub name: String,
    pub qualifier: Qualifier,
    /// The qualifier exactly as the caller wrote it, if any (for the invoked ARN).
    pub qualifier_text: Option<String>,
}

impl FunctionRef {
    /// The ARN the runtime sees as `Lambda-Runtime-Invoked-Function-Arn`: the namespace stands in the
    /// account field, the qualifier is present only if the caller gave one (as on Lambda).
    pub fn invoked_arn(&self, region: &str) -> String {
        let base = format!(
            "arn:aws:lambda:{region}:{}:function:{}",
            self.namespace, self.name
        );
        match &self.qualifier_text {
            Some(q) => format!("{base}:{q}"),
            None => base,
        }
    }
}

/// Parse a decoded `FunctionName` and the optional `Qualifier` query parameter.
pub fn parse(
    function_name: &str,
    query_qualifier: Option<&str>,
    default_namespace: &str,
) -> Result<FunctionRef, LambdaError> {
    if function_name.is_empty() || function_name.len() > 256 {
        return Err(invalid(
            "FunctionName must be 1 to 256 characters long".to_string(),
        ));
    }
    let parts: Vec<&str> = function_name.split(':').collect();
    let (account, rest): (Option<&str>, &[&str]) = match parts.as_slice() {
        [
            "arn",
            _partition,
            "lambda",
            _region,
            account,
            "function",
            rest @ ..,
        ] => (Some(*account), rest),
        [account, "function", rest @ ..] => (Some(*account), rest),
        rest => (None, rest),
    };
    let (name_part, suffix) = match rest {
        [name] => (*name, None),
        // `name:` names no qualifier: Lambda's pattern wants one after the colon.
        [name, q] if !q.is_empty() => (*name, Some(*q)),
        _ => {
            return Err(invalid_field("functionName", function_name, NAME_PATTERN));
        }
    };
    let (namespace, name) = match (account, name_part.split_once('/')) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!("Invalid FunctionName: {function_name}")));
        }
        (Some(acct), None) => (namespace_of_account(acct, default_namespace)?, name_part),
        (None, Some((ns, name))) => {
            if !valid_namespace(ns) {
                return Err(invalid(format!("Invalid namespace in FunctionName: {ns}")));
            }
            (ns.to_string(), name)
        }
        (None, None) => (default_namespace.to_string(), name_part),
    };
    if !valid_name(name) {
        return Err(invalid(format!("Invalid FunctionName: {function_name}")));
    }
    let qualifier_text = match (suffix, query_qualifier.filter(|q| !q.is_empty())) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                "The derived qualifier from the function name does not match the specified \
                 qualifier."
                    .to_string(),
            ));
        }
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    let qualifier = match qualifier_text {
        Some(q) => Qualifier::parse(q)?,
        None => Qualifier::LatestPublished,
    };
    Ok(FunctionRef {
        namespace,
        name: name.to_string(),
        qualifier,
        qualifier_text: qualifier_text.map(str::to_string),
    })
}

fn namespace_of_account(account: &str, default_namespace: &str) -> Result<String, LambdaError> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(default_namespace.to_string())
    } else if valid_namespace(account) {
        Ok(account.to_string())
    } else {
        Err(invalid(format!(
            "Invalid account (namespace) in ARN: {account}"
        )))
    }
}

/// Kubernetes namespace: an RFC 1123 label.
fn valid_namespace(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Lambda function names (letters, digits, `-`, `_`) plus `.` so Kubernetes names fit too.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 140
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn valid_alias(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn invalid(message: String) -> LambdaError {
    LambdaError::InvalidParameterValue(message)
}

/// Lambda's pattern for `FunctionName` (an ARN's account may name a namespace here).
pub const NAME_PATTERN: &str = "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?\
     (\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?";
/// Lambda's pattern for `Qualifier`.
pub const QUALIFIER_PATTERN: &str = "(|[a-zA-Z0-9$_-]+)";

/// A 400 in Lambda's validation style, naming the field and the pattern it must match. The value
/// is shown only when it is printable ASCII (it came from the caller).
pub fn invalid_field(field: &str, value: &str, pattern: &str) -> LambdaError {
    let shown = if value.len() <= 256 && value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        format!("Value '{value}' at '{field}'")
    } else {
        format!("Value at '{field}'")
    };
    LambdaError::InvalidParameterValue(format!(
        "1 validation error detected: {shown} failed to satisfy constraint: Member must satisfy \
         regular expression pattern: {pattern}"
    ))
}

/// The `Qualifier` query parameter: absent or empty is none; a malformed escape is a 400 (not a
/// silent fall back to the latest version).
pub fn query_qualifier(query: Option<&str>) -> Result<Option<String>, LambdaError> {
    let Some(query) = query else {
        return Ok(None);
    };
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "Qualifier" {
            continue;
        }
        return match percent_decode(&v.replace('+', " ")) {
            Some(q) if q.is_empty() => Ok(None),
            Some(q) => Ok(Some(q)),
            None => Err(invalid_field("qualifier", v, QUALIFIER_PATTERN)),
        };
    }
    Ok(None)
}

/// Decode `%XX` escapes of a URL path segment. `None` on a malformed escape or non-UTF-8 result.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, q: Option<&str>) -> Result<FunctionRef, LambdaError> {
        parse(s, q, "default")
    }

    #[test]
    fn plain_name_uses_default_namespace_and_latest_published() {
        let r = p("hello", None).expect("parse");
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str()),
            ("default", "hello")
        );
        assert_eq!(r.qualifier, Qualifier::LatestPublished);
        assert_eq!(
            r.invoked_arn("us-east-1"),
            "arn:aws:lambda:us-east-1:default:function:hello"
        );
    }

    #[test]
    fn name_with_qualifier_and_query_qualifier() {
        assert_eq!(
            p("hello:3", None).expect("parse").qualifier,
            Qualifier::Version(3)
        );
        assert_eq!(
            p("hello", Some("7")).expect("parse").qualifier,
            Qualifier::Version(7)
        );
        assert_eq!(
            p("hello:7", Some("7")).expect("parse").qualifier,
            Qualifier::Version(7)
        );
        assert!(p("hello:3", Some("4")).is_err());
        assert_eq!(
            p("hello:$LATEST.PUBLISHED", None).expect("parse").qualifier,
            Qualifier::LatestPublished
        );
        assert_eq!(
            p("hello:$LATEST", None).expect("parse").qualifier,
            Qualifier::LatestPublished
        );
        assert_eq!(
            p("hello:live", None).expect("parse").qualifier,
            Qualifier::Alias("live".into())
        );
    }

    #[test]
    fn namespace_slash_name() {
        let r = p("team-a/hello:2", None).expect("parse");
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("team-a", "hello"));
        assert_eq!(r.qualifier, Qualifier::Version(2));
        assert!(p("Team_A/hello", None).is_err());
    }

    #[test]
    fn full_and_partial_arns() {
        let r = p("arn:aws:lambda:us-west-2:team-a:function:hello:5", None).expect("parse");
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("team-a", "hello"));
        assert_eq!(r.qualifier, Qualifier::Version(5));
        assert_eq!(
            r.invoked_arn("us-west-2"),
            "arn:aws:lambda:us-west-2:team-a:function:hello:5"
        );
        let r = p("arn:aws:lambda:us-west-2:123456789012:function:hello", None).expect("parse");
        assert_eq!(r.namespace, "default");
        let r = p("team-b:function:hello", None).expect("parse");
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("team-b", "hello"));
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "",
            "a:b:c",
            "arn:aws:lambda:r:ns:function:",
            "hello world",
            "x:9999999999999",
        ] {
            assert!(p(bad, None).is_err(), "{bad}");
        }
        assert!(p(&"a".repeat(300), None).is_err());
    }

    #[test]
    fn decodes_percent_escapes_and_query() {
        assert_eq!(
            percent_decode("arn%3Aaws%3Alambda").as_deref(),
            Some("arn:aws:lambda")
        );
        assert_eq!(percent_decode("%24LATEST").as_deref(), Some("$LATEST"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(
            query_qualifier(Some("a=1&Qualifier=%24LATEST")),
            Ok(Some("$LATEST".to_string()))
        );
        assert_eq!(query_qualifier(None), Ok(None));
    }

    #[test]
    fn bad_or_empty_qualifiers_are_a_400_naming_the_field() {
        assert_eq!(
            query_qualifier(Some("Qualifier=%24LATEST")),
            Ok(Some("$LATEST".into()))
        );
        assert_eq!(query_qualifier(Some("Qualifier=")), Ok(None));
        assert_eq!(query_qualifier(Some("x=1")), Ok(None));
        let Err(LambdaError::InvalidParameterValue(m)) = query_qualifier(Some("Qualifier=%zz"))
        else {
            panic!("%zz must be refused");
        };
        assert!(m.contains("'qualifier'"), "{m}");
        let Err(LambdaError::InvalidParameterValue(m)) = p("hello:", None) else {
            panic!("an empty qualifier must be refused");
        };
        assert!(m.contains("Value 'hello:' at 'functionName'"), "{m}");
        assert!(p("hello", Some("a b")).is_err());
    }
}
