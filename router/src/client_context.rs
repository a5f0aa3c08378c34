//! `X-Amz-Client-Context`: base64 of a JSON object, at most 3,583 bytes of base64 text. The
//! runtime gets the decoded JSON in `Lambda-Runtime-Client-Context`. Pure.

use base64::Engine;

use crate::lambda_error::LambdaError;

/// Lambda's limit on the header (base64 text).
pub const MAX_ENCODED: usize = 3583;

/// Decode and check a client context; the JSON comes back as the same document in header-safe
/// ASCII. JSON allows line breaks and tabs only as whitespace between tokens (inside strings they
/// must be escaped), so they are dropped; anything beyond ASCII can only be inside strings, where
/// `\uXXXX` escapes say the same (runtime clients read the header as ASCII text).
pub fn decode(raw: &[u8]) -> Result<String, LambdaError> {
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
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text).is_err() {
        return Err(bad());
    }
    Ok(to_header_ascii(&text))
}

/// Valid JSON text, as ASCII without control characters.
fn to_header_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '\n' | '\r' | '\t' => {}
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out
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
            r#"{"custom":{"a":1}}"#
        );
        // Pretty-printed JSON (line breaks between tokens) is fine; the escaped \n in the string
        // is kept.
        let pretty = "{\n  \"custom\": {\"k\": \"a\\nb\"},\r\n  \"env\": {}\n}";
        let out = decode(&enc(pretty)).expect("ok");
        assert!(http::HeaderValue::from_str(&out).is_ok());
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["custom"]["k"], "a\nb");
        let utf8 = decode(&enc(r#"{"custom":{"name":"Zoë 😀"}}"#)).expect("ok");
        assert_eq!(utf8, r#"{"custom":{"name":"Zo\u00eb \ud83d\ude00"}}"#);
        let v: serde_json::Value = serde_json::from_str(&utf8).expect("json");
        assert_eq!(v["custom"]["name"], "Zoë 😀");
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
