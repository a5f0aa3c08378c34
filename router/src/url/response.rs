//! A function's answer to a function URL request, as Lambda maps it: a JSON object with
//! `statusCode` is a response (`statusCode`, `headers`, `cookies` as `Set-Cookie`, `body`,
//! `isBase64Encoded`); any other JSON is a 200 `application/json` body as it is. A function error
//! is a 502.

use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlResponse {
    pub status: u16,
    /// In order; `Set-Cookie` once per cookie.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// What a successful answer becomes.
pub fn from_answer(answer: &[u8]) -> UrlResponse {
    let json_body = |body: Bytes| UrlResponse {
        status: 200,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body,
    };
    let Ok(value) = serde_json::from_slice::<Value>(answer) else {
        return json_body(Bytes::copy_from_slice(answer));
    };
    let Some(status) = value
        .get("statusCode")
        .and_then(Value::as_u64)
        .filter(|s| (100..=599).contains(s))
    else {
        return json_body(Bytes::copy_from_slice(answer));
    };
    let mut headers: Vec<(String, String)> = value
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                _ => return None,
            };
            Some((k.to_ascii_lowercase(), v))
        })
        .collect();
    if !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    for cookie in value
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        headers.push(("set-cookie".to_string(), cookie.to_string()));
    }
    let body = match value.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) => {
            if value.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                match base64::engine::general_purpose::STANDARD.decode(s) {
                    Ok(b) => Bytes::from(b),
                    Err(_) => return function_error(),
                }
            } else {
                Bytes::from(s.clone())
            }
        }
        Some(other) => Bytes::from(other.to_string()),
    };
    UrlResponse {
        status: status as u16,
        headers,
        body,
    }
}

/// A function that failed (or answered something Lambda cannot map): 502.
pub fn function_error() -> UrlResponse {
    UrlResponse {
        status: 502,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: Bytes::from_static(br#"{"Message":"Internal Server Error"}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_object_maps_status_headers_cookies_and_body() {
        let r = from_answer(
            br#"{"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-N": 5},
                 "cookies": ["a=1; Path=/", "b=2"], "body": "made"}"#,
        );
        assert_eq!(r.status, 201);
        assert_eq!(r.body, Bytes::from_static(b"made"));
        assert!(
            r.headers
                .contains(&("content-type".into(), "text/plain".into()))
        );
        assert!(r.headers.contains(&("x-n".into(), "5".into())));
        let cookies: Vec<&str> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cookies, ["a=1; Path=/", "b=2"]);
    }

    #[test]
    fn base64_bodies_are_decoded_and_plain_values_are_json() {
        let r = from_answer(br#"{"statusCode": 200, "body": "AJ+Slg==", "isBase64Encoded": true}"#);
        assert_eq!(r.body.as_ref(), &[0, 159, 146, 150]);
        let r = from_answer(br#"{"message": "hi"}"#);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.as_ref(), br#"{"message": "hi"}"#);
        assert_eq!(
            r.headers,
            [("content-type".to_string(), "application/json".to_string())]
        );
        let r = from_answer(b"\"just a string\"");
        assert_eq!(r.body.as_ref(), b"\"just a string\"");
        let r = from_answer(br#"{"statusCode": 200, "body": "%%%", "isBase64Encoded": true}"#);
        assert_eq!(r.status, 502);
    }
}
