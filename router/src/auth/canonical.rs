//! The canonical request and the string to sign, as AWS rebuilds them on the server side.
//!
//! The path is the one on the wire (still percent-encoded), with dot segments and empty segments
//! removed, then URI-encoded **again**: every service but S3 double-encodes. So a function ARN the
//! CLI sends as `arn%3Aaws%3Alambda...` is signed as `arn%253Aaws%253Alambda...` (botocore's
//! `SigV4Auth._normalize_url_path`, AWS's "Create a canonical request").

use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

use super::authorization::{ALGORITHM, Scope};
use super::signing::hex;

/// Everything but the unreserved characters `A-Z a-z 0-9 - _ . ~` is encoded.
const AWS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping the path's slashes.
const AWS_ENCODE_PATH: &AsciiSet = &AWS_ENCODE.remove(b'/');

/// The canonical URI of a wire path.
pub fn canonical_uri(path: &str) -> String {
    utf8_percent_encode(&remove_dot_segments(path), AWS_ENCODE_PATH).to_string()
}

/// RFC 3986's dot-segment removal, also dropping empty segments (as AWS does), keeping a leading
/// and trailing slash.
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let lead = if path.starts_with('/') { "/" } else { "" };
    let trail = if path.ends_with('/') && !out.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{lead}{}{trail}", out.join("/"))
}

/// The canonical query string: each name and value decoded, then encoded as AWS encodes, the
/// pairs sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let encode = |s: &str| {
        let decoded: Vec<u8> = percent_decode_str(s).collect();
        percent_encoding::percent_encode(&decoded, AWS_ENCODE).to_string()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(k), encode(v))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `name:value\n` for each signed header, in the order signed; repeated headers joined by ',',
/// values trimmed and inner runs of spaces collapsed. `None` when a signed header is absent or
/// not text: such a request cannot carry a valid signature.
pub fn canonical_headers(headers: &HeaderMap, signed: &[String]) -> Option<String> {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| v.to_str().ok().map(collapse_spaces))
            .collect::<Option<_>>()?;
        if values.is_empty() {
            return None;
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Some(out)
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request: method, URI, query, headers, signed header names, payload hash.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    signed_headers: &[String],
    payload_hash: &str,
) -> Option<String> {
    Some(format!(
        "{method}\n{}\n{}\n{}\n{}\n{payload_hash}",
        canonical_uri(path),
        canonical_query(query),
        canonical_headers(headers, signed_headers)?,
        signed_headers.join(";")
    ))
}

/// The string to sign: algorithm, `X-Amz-Date`, scope, hash of the canonical request.
pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.to_scope_string(),
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_paths_are_encoded_twice() {
        assert_eq!(
            canonical_uri(
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Ahello/invocations"
            ),
            "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A1%253Afunction%253Ahello/invocations"
        );
        // A client that sends ':' unencoded signs it encoded once.
        assert_eq!(
            canonical_uri("/2015-03-31/functions/hello:live/invocations"),
            "/2015-03-31/functions/hello%3Alive/invocations"
        );
    }

    #[test]
    fn dot_and_empty_segments_go() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri("/../.."), "/");
    }

    #[test]
    fn query_pairs_are_reencoded_and_sorted() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(
            canonical_query("b=x%20y&a=%2A~&Qualifier=1"),
            "Qualifier=1&a=%2A~&b=x%20y"
        );
        assert_eq!(canonical_query("a=2&a=1&flag"), "a=1&a=2&flag=");
        assert_eq!(canonical_query("v=%24LATEST"), "v=%24LATEST");
    }

    #[test]
    fn headers_are_lowercase_trimmed_and_joined() {
        let mut h = HeaderMap::new();
        h.insert("host", "example.com".parse().unwrap());
        h.append("x-multi", " a   b ".parse().unwrap());
        h.append("x-multi", "c".parse().unwrap());
        let signed = ["host".to_string(), "x-multi".to_string()];
        assert_eq!(
            canonical_headers(&h, &signed).unwrap(),
            "host:example.com\nx-multi:a b,c\n"
        );
        assert_eq!(canonical_headers(&h, &["x-absent".to_string()]), None);
    }
}
