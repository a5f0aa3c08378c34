//! Function URLs: plain HTTP to a function, as Lambda's function URLs are. Pure parts only so
//! far: the request as Lambda's payload format version 2.0 event ([`event`]), the function's
//! answer back as an HTTP response ([`response`]), and CORS as Lambda applies it ([`cors`]).
//! [`serve`] is the URL listener's handler (started with `--url-listen`); the `url` section of
//! the Function and the chart's exposure are to come.

pub mod cors;
pub mod event;
pub mod response;
pub mod serve;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A function's URL settings (the shape of CreateFunctionUrlConfig).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlConfig {
    pub auth_type: AuthType,
    #[serde(default)]
    pub invoke_mode: InvokeMode,
    /// The alias or version the URL invokes (unset: the function's current version).
    #[serde(default)]
    pub qualifier: Option<String>,
    #[serde(default)]
    pub cors: Option<cors::Cors>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthType {
    /// Public: anyone who reaches the URL may call it.
    None,
    /// SigV4-signed callers that RBAC lets invoke the function.
    AwsIam,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvokeMode {
    #[default]
    Buffered,
    ResponseStream,
}

/// A function's URL id: 32 lower-case hex characters of SHA-256 over `namespace/name`, stable for
/// the life of the function (as Lambda's URL id is), so the operator can show the URL the router
/// serves without asking it.
pub fn url_id(namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ids_are_stable_and_distinct() {
        let a = url_id("default", "hello");
        assert_eq!(a.len(), 32);
        assert_eq!(a, url_id("default", "hello"));
        assert_ne!(a, url_id("team", "hello"));
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
