//! Authorization of an invocation by RBAC: verb `invoke` on `functions.lmi.dev`, in the function's
//! namespace and by its name, asked with a SubjectAccessReview. Decisions are cached for a short
//! time, allows and denies apart (a deny expires sooner, so a new RoleBinding takes effect fast).

use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use lmi_crds::access::{FUNCTIONS_RESOURCE, INVOKE_VERB};
use lmi_crds::common::GROUP;
use prometheus::IntCounterVec;

use super::ttl_cache::{Stripes, TtlCache};
use crate::auth::Identity;
use crate::lambda_error::LambdaError;

/// How long an allow is reused: a removed RoleBinding stops a caller within this time.
const ALLOW_TTL: Duration = Duration::from_secs(30);
/// How long a deny is reused.
const DENY_TTL: Duration = Duration::from_secs(5);
const CAPACITY: usize = 10_000;
/// Reviews that may run at once for different questions.
const STRIPES: usize = 64;

/// Who asks to do what: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    pub username: String,
    pub groups: Vec<String>,
    pub namespace: String,
    pub function: String,
}

pub struct Authorizer {
    client: kube::Client,
    allowed: TtlCache<Question, ()>,
    denied: TtlCache<Question, String>,
    stripes: Stripes,
    apiserver_requests: IntCounterVec,
}

impl Authorizer {
    pub fn new(client: kube::Client, apiserver_requests: IntCounterVec) -> Self {
        Self {
            client,
            allowed: TtlCache::new(ALLOW_TTL, CAPACITY),
            denied: TtlCache::new(DENY_TTL, CAPACITY),
            stripes: Stripes::new(STRIPES),
            apiserver_requests,
        }
    }

    /// Ok when RBAC allows `identity` to invoke the function; otherwise the reason the
    /// authorizer gave (empty when it gave none).
    pub async fn check(
        &self,
        identity: &Identity,
        namespace: &str,
        function: &str,
    ) -> Result<Result<(), String>, LambdaError> {
        let question = Question {
            username: identity.username.clone(),
            groups: identity.groups.clone(),
            namespace: namespace.to_string(),
            function: function.to_string(),
        };
        let now = Instant::now();
        if self.allowed.get(&question, now).is_some() {
            return Ok(Ok(()));
        }
        if let Some(reason) = self.denied.get(&question, now) {
            return Ok(Err(reason));
        }
        // Concurrent misses of one question wait for the first one's review.
        let _one_review = self.stripes.lock(&question).await;
        let now = Instant::now();
        if self.allowed.get(&question, now).is_some() {
            return Ok(Ok(()));
        }
        if let Some(reason) = self.denied.get(&question, now) {
            return Ok(Err(reason));
        }
        self.apiserver_requests
            .with_label_values(&["subjectaccessreviews"])
            .inc();
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review_of(&question))
            .await
            .map_err(|e| {
                LambdaError::Service(format!("cannot check the caller's permission: {e}"))
            })?;
        let status = answer.status.unwrap_or_default();
        let now = Instant::now();
        if status.allowed && status.denied != Some(true) {
            self.allowed.insert(question, (), now);
            Ok(Ok(()))
        } else {
            let reason = status.reason.unwrap_or_default();
            self.denied.insert(question, reason.clone(), now);
            Ok(Err(reason))
        }
    }
}

/// The SubjectAccessReview that asks `question`. Pure.
pub fn review_of(question: &Question) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(question.username.clone()),
            groups: Some(question.groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(GROUP.to_string()),
                resource: Some(FUNCTIONS_RESOURCE.to_string()),
                verb: Some(INVOKE_VERB.to_string()),
                namespace: Some(question.namespace.clone()),
                name: Some(question.function.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_review_asks_invoke_on_the_function() {
        let q = Question {
            username: "alice".into(),
            groups: vec!["system:authenticated".into()],
            namespace: "team-a".into(),
            function: "hello".into(),
        };
        let attrs = review_of(&q).spec.resource_attributes.expect("attributes");
        assert_eq!(attrs.group.as_deref(), Some("lmi.dev"));
        assert_eq!(attrs.resource.as_deref(), Some("functions"));
        assert_eq!(attrs.verb.as_deref(), Some("invoke"));
        assert_eq!(attrs.namespace.as_deref(), Some("team-a"));
        assert_eq!(attrs.name.as_deref(), Some("hello"));
    }
}
