//! Who is calling, and may they invoke this function: the I/O half of caller authentication
//! (the pure SigV4 verification is `crate::auth`).
//!
//! - **Authentication**: AWS Signature Version 4 against the access-key Secrets ([`keys`]), or a
//!   Kubernetes bearer token checked with a TokenReview ([`tokens`]).
//! - **Authorization**: RBAC verb `invoke` on the function, asked with a SubjectAccessReview
//!   ([`rbac`]).
//!
//! The router calls [`Access::authenticate`] before it reads a payload (an unknown key or a
//! stale date costs no body), [`Caller::identity`] once the payload is in (the signature covers
//! it), then [`Access::authorize`].

pub mod keys;
pub mod rbac;
pub mod tokens;
pub mod ttl_cache;

use std::sync::Arc;
use std::time::SystemTime;

use prometheus::IntCounterVec;

use crate::Error;
use crate::auth::{self, AuthError, Identity, SigV4Config, SignedHead};
use crate::function_name::FunctionRef;
use crate::lambda_error::LambdaError;

/// What the router's flags say about access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// Namespace of the access-key Secrets.
    pub key_namespace: String,
    /// Audience a bearer token must be issued for.
    pub token_audience: String,
    /// Regions a SigV4 credential scope may name; empty allows any.
    pub regions: Vec<String>,
}

pub struct Access {
    keys: Arc<keys::KeyStore>,
    tokens: tokens::TokenReviewer,
    rbac: rbac::Authorizer,
    sigv4: SigV4Config,
}

/// A caller after the checks that need no body.
pub enum Caller {
    /// Signed with SigV4: the signature is checked once the body is in.
    Signed(Box<SignedHead>),
    /// Known already (a reviewed bearer token).
    Known(Identity),
}

impl Access {
    /// Starts the watch of access keys; returns once they are listed.
    pub async fn start(
        client: kube::Client,
        config: &AccessConfig,
        apiserver_requests: IntCounterVec,
    ) -> Result<Access, Error> {
        let store = Arc::new(keys::KeyStore::default());
        keys::watch(store.clone(), client.clone(), &config.key_namespace).await?;
        Ok(Access {
            keys: store,
            tokens: tokens::TokenReviewer::new(
                client.clone(),
                config.token_audience.clone(),
                apiserver_requests.clone(),
            ),
            rbac: rbac::Authorizer::new(client, apiserver_requests),
            sigv4: SigV4Config {
                regions: config.regions.clone(),
            },
        })
    }

    /// Everything about the caller that needs no body: a bearer token is reviewed; a SigV4
    /// header, its scope, key and date are checked.
    pub async fn authenticate(
        &self,
        request: &http::request::Parts,
    ) -> Result<Caller, LambdaError> {
        if let Some(token) = bearer_token(request) {
            return match self.tokens.review(token).await {
                Ok(identity) => Ok(Caller::Known(identity)),
                Err(tokens::ReviewError::Refused(e)) => Err(LambdaError::Unauthenticated(e)),
                Err(tokens::ReviewError::Unavailable(e)) => Err(e),
            };
        }
        auth::check_head(request, &*self.keys, &self.sigv4, SystemTime::now())
            .map(|head| Caller::Signed(Box::new(head)))
            .map_err(LambdaError::Unauthenticated)
    }

    /// Whether RBAC lets `identity` invoke the function `function` names.
    pub async fn authorize(
        &self,
        identity: &Identity,
        function: &FunctionRef,
        region: &str,
    ) -> Result<(), LambdaError> {
        match self
            .rbac
            .check(identity, &function.namespace, &function.name)
            .await?
        {
            Ok(()) => Ok(()),
            Err(reason) => Err(LambdaError::AccessDenied(access_denied_message(
                identity, function, region, &reason,
            ))),
        }
    }
}

impl Caller {
    /// The caller's identity, once the body (which a SigV4 signature may cover) is in.
    pub fn identity(
        self,
        request: &http::request::Parts,
        body: &[u8],
    ) -> Result<Identity, LambdaError> {
        match self {
            Caller::Known(identity) => Ok(identity),
            Caller::Signed(head) => {
                // Hashing up to 6 MB costs a few milliseconds: only when the signature covers it.
                let hash = if head.signs_body() {
                    auth::body_sha256(body)
                } else {
                    String::new()
                };
                head.verify_body(request, &hash)
                    .map_err(LambdaError::Unauthenticated)
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>`, if that is the scheme.
fn bearer_token(request: &http::request::Parts) -> Option<&str> {
    let value = request
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Lambda's AccessDeniedException message, with the Kubernetes terms of the missing permission.
pub fn access_denied_message(
    identity: &Identity,
    function: &FunctionRef,
    region: &str,
    reason: &str,
) -> String {
    let mut message = format!(
        "User: {} is not authorized to perform: lambda:InvokeFunction on resource: {} because no RBAC rule allows verb 'invoke' on functions.lmi.dev \"{}\" in namespace \"{}\" (bind ClusterRole lmi-invoker)",
        identity.username,
        function.invoked_arn(region),
        function.name,
        function.namespace,
    );
    if !reason.is_empty() {
        message.push_str(&format!(": {reason}"));
    }
    message
}

/// An authentication failure as the caller sees it.
impl From<AuthError> for LambdaError {
    fn from(e: AuthError) -> Self {
        LambdaError::Unauthenticated(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(authorization: &str) -> http::request::Parts {
        http::Request::builder()
            .header("authorization", authorization)
            .body(())
            .expect("request")
            .into_parts()
            .0
    }

    #[test]
    fn bearer_tokens_are_told_from_signatures() {
        assert_eq!(bearer_token(&parts("Bearer abc.def")), Some("abc.def"));
        assert_eq!(bearer_token(&parts("bearer  abc")), Some("abc"));
        assert_eq!(bearer_token(&parts("Bearer ")), None);
        assert_eq!(
            bearer_token(&parts(
                "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/lambda/aws4_request"
            )),
            None
        );
    }

    #[test]
    fn the_denial_names_identity_action_and_function() {
        let identity = Identity {
            access_key_id: Some("K".into()),
            username: "alice".into(),
            groups: vec![],
        };
        let f = crate::function_name::parse("hello", None, "team-a").expect("name");
        let m = access_denied_message(&identity, &f, "us-east-1", "");
        assert!(m.starts_with("User: alice is not authorized to perform: lambda:InvokeFunction"));
        assert!(m.contains("function:hello"), "{m}");
        assert!(m.contains("namespace \"team-a\""), "{m}");
    }
}
