//! A function URL request as Lambda's payload format version 2.0 event: `rawPath`,
//! `rawQueryString`, `cookies`, `headers` (lower-case names, repeated ones joined by commas),
//! `queryStringParameters` (decoded, repeated ones joined by commas), `requestContext` (with
//! `http`), and the body: text as it is, anything else base64 with `isBase64Encoded`.

use std::collections::BTreeMap;

use base64::Engine;
use http::HeaderMap;
use serde_json::{Value, json};

/// What the event is made of.
pub struct UrlRequest<'a> {
    pub method: &'a str,
    /// The path as the caller sent it, after the URL's own prefix (for the path form).
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: &'a str,
    /// The URL's id (`requestContext.apiId`, `domainPrefix`) and host name.
    pub url_id: &'a str,
    pub domain_name: &'a str,
    /// The account field: here, the function's namespace.
    pub account_id: &'a str,
    pub request_id: &'a str,
    pub time_epoch_ms: u64,
    /// `requestContext.time`, in Lambda's form (`12/Mar/2020:19:03:58 +0000`).
    pub time: &'a str,
    /// For AWS_IAM URLs: the caller as `requestContext.authorizer.iam` shows it.
    pub iam: Option<Value>,
}

/// Bodies sent as text (UTF-8 only); anything else goes base64-encoded.
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || matches!(
            ct.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-www-form-urlencoded"
                | "application/graphql"
        )
        || ct.ends_with("+json")
        || ct.ends_with("+xml")
}

/// `%XX` and `+` decoded (a query string's form).
fn decode_query_part(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The version 2.0 event of `r`.
pub fn v2_event(r: &UrlRequest<'_>) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in r.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for pair in r.raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query
            .entry(decode_query_part(k))
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&decode_query_part(v));
            })
            .or_insert_with(|| decode_query_part(v));
    }
    let content_type = headers.get("content-type").map(String::as_str);
    let (body, base64) = if r.body.is_empty() {
        (None, false)
    } else if is_text(content_type) && std::str::from_utf8(r.body).is_ok() {
        (Some(String::from_utf8_lossy(r.body).into_owned()), false)
    } else {
        (
            Some(base64::engine::general_purpose::STANDARD.encode(r.body)),
            true,
        )
    };
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let mut context = json!({
        "accountId": r.account_id,
        "apiId": r.url_id,
        "domainName": r.domain_name,
        "domainPrefix": r.url_id,
        "http": {
            "method": r.method,
            "path": r.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": r.source_ip,
            "userAgent": user_agent,
        },
        "requestId": r.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": r.time,
        "timeEpoch": r.time_epoch_ms,
    });
    if let Some(iam) = &r.iam {
        context["authorizer"] = json!({"iam": iam});
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": r.raw_path,
        "rawQueryString": r.raw_query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if let Some(body) = body {
        event["body"] = json!(body);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(headers: &'a HeaderMap, query: &'a str, body: &'a [u8]) -> UrlRequest<'a> {
        UrlRequest {
            method: "POST",
            raw_path: "/my/path",
            raw_query: query,
            headers,
            body,
            source_ip: "10.0.0.1",
            url_id: "abc123",
            domain_name: "abc123.lambda-url.example.com",
            account_id: "default",
            request_id: "req-1",
            time_epoch_ms: 1_583_348_638_390,
            time: "04/Mar/2020:19:03:58 +0000",
            iam: None,
        }
    }

    #[test]
    fn headers_cookies_and_query_take_lambdas_shape() {
        let mut h = HeaderMap::new();
        h.insert("user-agent", "curl/8".parse().unwrap());
        h.append("x-multi", "a".parse().unwrap());
        h.append("x-multi", "b".parse().unwrap());
        h.insert("cookie", "s=1; theme=dark".parse().unwrap());
        let e = v2_event(&request(&h, "p1=v1&p1=v2&p2=a%20b&flag", b""));
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["rawPath"], "/my/path");
        assert_eq!(e["rawQueryString"], "p1=v1&p1=v2&p2=a%20b&flag");
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert_eq!(e["headers"].get("cookie"), None);
        assert_eq!(e["cookies"], json!(["s=1", "theme=dark"]));
        assert_eq!(e["queryStringParameters"]["p1"], "v1,v2");
        assert_eq!(e["queryStringParameters"]["p2"], "a b");
        assert_eq!(e["queryStringParameters"]["flag"], "");
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["requestContext"]["http"]["userAgent"], "curl/8");
        assert_eq!(e["requestContext"]["http"]["sourceIp"], "10.0.0.1");
        assert_eq!(e["requestContext"]["domainPrefix"], "abc123");
        assert_eq!(e.get("body"), None);
        assert_eq!(e["isBase64Encoded"], false);
    }

    #[test]
    fn text_bodies_stay_text_and_others_go_base64() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/json; charset=utf-8".parse().unwrap(),
        );
        let e = v2_event(&request(&h, "", br#"{"a":1}"#));
        assert_eq!(e["body"], r#"{"a":1}"#);
        assert_eq!(e["isBase64Encoded"], false);
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/octet-stream".parse().unwrap());
        let e = v2_event(&request(&h, "", &[0, 159, 146, 150]));
        assert_eq!(e["body"], "AJ+Slg==");
        assert_eq!(e["isBase64Encoded"], true);
        // Text that is not UTF-8 is not text.
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/plain".parse().unwrap());
        let e = v2_event(&request(&h, "", &[0xff, 0xfe]));
        assert_eq!(e["isBase64Encoded"], true);
    }

    #[test]
    fn query_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(decode_query_part("a+b%2Fc"), "a b/c");
        assert_eq!(decode_query_part("100%"), "100%");
        assert_eq!(decode_query_part("%zz"), "%zz");
    }
}
