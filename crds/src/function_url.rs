//! A Function's URL (the `url` section): plain HTTP(S) to the function without an SDK, in the
//! shape of Lambda's `CreateFunctionUrlConfig`. The router serves it; the operator shows the
//! address in the Function's `status.url`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A function URL's settings (Lambda's `CreateFunctionUrlConfig`). Unknown fields are ignored,
/// not refused: the routers read this from Functions, and a router older than a field must
/// still read the rest (the apiserver's schema refuses typos in manifests).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUrlConfig {
    /// `NONE`: anyone who reaches the URL may call it. `AWS_IAM`: SigV4-signed callers whom
    /// RBAC allows verb `invoke` on the function.
    pub auth_type: UrlAuthType,
    /// `BUFFERED` (default): the answer is sent whole, at most 6 MB. `RESPONSE_STREAM`: the
    /// answer streams as the function writes it, up to 200 MB.
    #[serde(default)]
    pub invoke_mode: UrlInvokeMode,
    /// The alias the URL invokes, or `$LATEST.PUBLISHED`. Unset: the function's current version.
    /// Not a version number (as in Lambda).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self == '$LATEST.PUBLISHED' || (self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && !self.matches('^[0-9]+$'))")
        .message("a URL's qualifier is an alias name or $LATEST.PUBLISHED, not a version number"))]
    pub qualifier: Option<String>,
    /// Cross-origin resource sharing, answered by the router as Lambda does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
}

/// Who may call a function URL.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UrlAuthType {
    /// Public.
    None,
    /// SigV4 with an access key, authorized by RBAC.
    AwsIam,
}

/// How a function URL answers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UrlInvokeMode {
    #[default]
    Buffered,
    ResponseStream,
}

/// A URL's CORS settings (Lambda's `Cors`, with its limits).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Whether cookies and credentials may be sent (`Access-Control-Allow-Credentials`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// Request headers a caller may use (`Access-Control-Allow-Headers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 1024)))]
    pub allow_headers: Vec<String>,
    /// Methods a caller may use, or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6))]
    #[x_kube(validation = Rule::new("self.all(m, m in ['*', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'])")
        .message("allowMethods holds *, GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS"))]
    pub allow_methods: Vec<String>,
    /// Origins that may call the URL (`https://www.example.com`), or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    pub allow_origins: Vec<String>,
    /// Response headers a browser script may read (`Access-Control-Expose-Headers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 1024)))]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight's answer, in seconds (0-86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub max_age: Option<u32>,
}

/// A function's URL id: 32 lower-case hex characters of SHA-256 over `namespace/name`. Stable
/// for the life of the function (as Lambda's URL id is), so the operator shows the URL the
/// routers serve without asking them.
pub fn url_id(namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The placeholder for the URL id in the operator's URL template.
pub const URL_ID_PLACEHOLDER: &str = "{id}";

/// A function's URL from the cluster's template (`http://{id}.lambda-url.localhost/` for the
/// host form, `https://lmi.example.com/{id}/` for the path form).
pub fn function_url(template: &str, namespace: &str, name: &str) -> String {
    template.replace(URL_ID_PLACEHOLDER, &url_id(namespace, name))
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

    #[test]
    fn the_template_takes_the_id_in_host_or_path_form() {
        let id = url_id("default", "hello");
        assert_eq!(
            function_url("http://{id}.lambda-url.localhost/", "default", "hello"),
            format!("http://{id}.lambda-url.localhost/")
        );
        assert_eq!(
            function_url("https://lmi.example.com/{id}/", "default", "hello"),
            format!("https://lmi.example.com/{id}/")
        );
    }

    #[test]
    fn lambdas_url_config_json_reads() {
        let c: FunctionUrlConfig = serde_json::from_str(
            r#"{"authType":"AWS_IAM","invokeMode":"RESPONSE_STREAM","cors":{"allowOrigins":["*"],"maxAge":60}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.auth_type, UrlAuthType::AwsIam);
        assert_eq!(c.invoke_mode, UrlInvokeMode::ResponseStream);
        assert_eq!(c.cors.map(|c| c.max_age), Some(Some(60)));
    }
}
