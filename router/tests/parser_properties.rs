//! Property-based tests of the Invoke API's parsers: function names and ARNs, qualifiers,
//! percent escapes, header values and the client context. A few hundred generated cases each,
//! shrunk to the smallest failing input when one fails.

use base64::Engine;
use http::{HeaderMap, HeaderValue};
use lmi_router::client_context;
use lmi_router::function_name::{Qualifier, parse, percent_decode, query_qualifier};
use lmi_router::lambda_error::LambdaError;
use lmi_router::router::api::ascii_header;
use proptest::prelude::*;

fn namespace() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,64}"
}

/// A qualifier as a caller writes it, and what it means.
fn qualifier() -> impl Strategy<Value = (String, Qualifier)> {
    prop_oneof![
        (0u32..=u32::MAX).prop_map(|n| (n.to_string(), Qualifier::Version(n))),
        Just(("$LATEST".to_string(), Qualifier::LatestPublished)),
        Just(("$LATEST.PUBLISHED".to_string(), Qualifier::LatestPublished)),
        "[a-zA-Z_-][a-zA-Z0-9_-]{0,30}".prop_map(|a| (a.clone(), Qualifier::Alias(a))),
    ]
}

/// Percent-encode every byte that is not unreserved, as the SDKs do for a path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A JSON value of strings, numbers, booleans, arrays and objects, strings of any characters.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<String>().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsing_any_text_never_panics(s in any::<String>(), q in proptest::option::of(any::<String>())) {
        let _ = parse(&s, q.as_deref(), "default");
        let _ = percent_decode(&s);
        let _ = query_qualifier(Some(&s));
    }

    #[test]
    fn every_form_of_a_name_means_the_same_function(
        ns in namespace(), n in name(), (q, meaning) in qualifier(),
    ) {
        let forms = [
            format!("{ns}/{n}:{q}"),
            format!("{ns}:function:{n}:{q}"),
            format!("arn:aws:lambda:us-east-1:{ns}:function:{n}:{q}"),
        ];
        for form in &forms {
            // Through the URL as the SDKs send it, and back.
            let decoded = percent_decode(&encode(form));
            prop_assert_eq!(decoded.as_deref(), Some(form.as_str()));
            let r = parse(form, None, "default").map_err(|e| TestCaseError::fail(format!("{form}: {e:?}")))?;
            prop_assert_eq!(&r.namespace, &ns);
            prop_assert_eq!(&r.name, &n);
            prop_assert_eq!(&r.qualifier, &meaning);
            // The ARN the runtime sees parses back to the same function.
            let again = parse(&r.invoked_arn("us-east-1"), None, "default").map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(again, r);
        }
        // The query parameter says the same as the name; a different one is refused.
        let r = parse(&format!("{ns}/{n}"), Some(&q), "default").map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(&r.qualifier, &meaning);
        let with_q = format!("{ns}/{n}:{q}");
        let other_q = format!("{q}x");
        prop_assert!(parse(&with_q, Some(&other_q), "default").is_err());
        // An empty qualifier after the colon is refused, naming the field.
        let no_q = format!("{ns}/{n}:");
        let empty = parse(&no_q, None, "default");
        prop_assert!(matches!(empty, Err(LambdaError::InvalidParameterValue(ref m)) if m.contains("'functionName'")));
    }

    #[test]
    fn a_qualifier_in_the_query_is_decoded_or_refused(q in any::<String>()) {
        let query = format!("Qualifier={}", encode(&q));
        let got = query_qualifier(Some(&query));
        prop_assert_eq!(got, Ok((!q.is_empty()).then(|| q.clone())));
        // A broken escape is a 400 naming the qualifier, never the latest version.
        let broken = format!("Qualifier={}%z", encode(&q));
        let bad = query_qualifier(Some(&broken));
        prop_assert!(matches!(bad, Err(LambdaError::InvalidParameterValue(ref m)) if m.contains("'qualifier'")));
    }

    #[test]
    fn header_values_are_taken_only_as_ascii_text(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else {
            // Not a header value at all (CR, LF, NUL...): the HTTP layer refuses it first.
            return Ok(());
        };
        let mut h = HeaderMap::new();
        h.insert("x-amz-invocation-type", value);
        let got = ascii_header(&h, "x-amz-invocation-type", "invocationType");
        let ascii = bytes.iter().all(|b| *b == b'\t' || (b' '..=b'~').contains(b));
        prop_assert_eq!(got.is_ok(), ascii);
        if let Err(LambdaError::InvalidParameterValue(m)) = got {
            prop_assert!(m.contains("'invocationType'"));
        }
    }

    #[test]
    fn a_client_context_reaches_the_runtime_as_the_same_json(
        doc in prop::collection::btree_map(any::<String>(), json_value(), 0..4),
        pretty in any::<bool>(),
    ) {
        let doc = serde_json::Value::Object(doc.into_iter().collect());
        let text = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) }
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let raw = base64::engine::general_purpose::STANDARD.encode(&text);
        match client_context::decode(raw.as_bytes()) {
            Ok(out) => {
                prop_assert!(HeaderValue::from_str(&out).is_ok(), "{out:?}");
                let back: serde_json::Value = serde_json::from_str(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(back, doc);
            }
            // Only for being too long.
            Err(LambdaError::InvalidParameterValue(_)) => prop_assert!(raw.len() > client_context::MAX_ENCODED),
            Err(e) => prop_assert!(false, "{e:?}"),
        }
    }

    #[test]
    fn any_bytes_as_a_client_context_are_decoded_or_refused(raw in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(out) = client_context::decode(&raw) {
            prop_assert!(HeaderValue::from_str(&out).is_ok());
        }
    }
}
