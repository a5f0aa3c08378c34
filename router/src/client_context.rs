//! `X-Amz-Client-Context`: base64 of a JSON object, at most 3,583 bytes of base64 text. The
//! runtime gets the decoded JSON in `Lambda-Runtime-Client-Context`. Pure.

use base64::Engine;

use crate::lambda_error::LambdaError;

/// Lambda's limit on the header (base64 text).
pub const MAX_ENCODED: usize = 3583;

/// Decode and check a client context; the JSON comes back as header-safe bytes. JSON allows line
/// breaks only as whitespace between tokens (inside strings they must be escaped), so dropping
/// every CR and LF keeps the same document and makes it a valid header value; any UTF-8 in its
/// strings stays as is (header values may carry such bytes).
pub fn decode(raw: &[u8]) -> Result<Vec<u8>, LambdaError> {
    if raw.len() > MAX_ENCODED {
        return Err(LambdaError::InvalidParameterValue(format!(
            "1 validation error detected: Value at 'clientContext' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_ENCODED}"
        )));
    }
    let bad = || {
        LambdaError::InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object.".to_string(),
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| bad())?;
    if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&decoded).is_err() {
        return Err(bad());
    }
    Ok(decoded
        .into_iter()
        .filter(|b| *b != b'\n' && *b != b'\r')
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(s)
            .into_bytes()
    }

    #[test]
    fn decodes_and_keeps_the_document() {
        assert_eq!(
            decode(&enc(r#"{"custom":{"a":1}}"#)).expect("ok"),
            br#"{"custom":{"a":1}}"#
        );
        // Pretty-printed JSON (line breaks between tokens) is fine; the escaped \n in the string
        // is kept.
        let pretty = "{\n  \"custom\": {\"k\": \"a\\nb\"},\r\n  \"env\": {}\n}";
        let out = decode(&enc(pretty)).expect("ok");
        assert!(http::HeaderValue::from_bytes(&out).is_ok());
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["custom"]["k"], "a\nb");
        let utf8 = decode(&enc(r#"{"custom":{"name":"Zoë"}}"#)).expect("ok");
        assert!(http::HeaderValue::from_bytes(&utf8).is_ok());
    }

    #[test]
    fn rejects_what_is_not_base64_json_object_or_too_long() {
        for bad in [&b"!!notbase64"[..], &enc("[1,2]"), &enc("{"), &enc("\"x\"")] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'A'; MAX_ENCODED + 1];
        assert!(matches!(
            decode(&long),
            Err(LambdaError::InvalidParameterValue(_))
        ));
    }
}
