//! Kubernetes bearer tokens (`Authorization: Bearer ...`), for in-cluster callers: a projected
//! service-account token whose audience is the router's, checked with a TokenReview. Answers are
//! cached for a short time, keyed by the token's SHA-256 (the token itself is not kept).

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Api;
use kube::api::PostParams;
use prometheus::IntCounterVec;

use super::ttl_cache::{Stripes, TtlCache};
use crate::auth::{AuthError, Identity, body_sha256};
use crate::lambda_error::LambdaError;

/// How long an accepted token is trusted without asking again. Short, so a deleted service
/// account or pod stops working soon; long enough that a busy caller costs one review a minute.
const ACCEPTED_TTL: Duration = Duration::from_secs(60);
/// How long a refused token stays refused without asking again (a burst of bad calls is one
/// review).
const REFUSED_TTL: Duration = Duration::from_secs(10);
const CAPACITY: usize = 10_000;

pub struct TokenReviewer {
    client: kube::Client,
    audience: String,
    accepted: TtlCache<String, Identity>,
    refused: TtlCache<String, ()>,
    stripes: Stripes,
    apiserver_requests: IntCounterVec,
}

impl TokenReviewer {
    pub fn new(client: kube::Client, audience: String, apiserver_requests: IntCounterVec) -> Self {
        Self {
            client,
            audience,
            accepted: TtlCache::new(ACCEPTED_TTL, CAPACITY),
            refused: TtlCache::new(REFUSED_TTL, CAPACITY),
            stripes: Stripes::new(64),
            apiserver_requests,
        }
    }

    /// Who `token` belongs to, if the apiserver accepts it for the router's audience.
    pub async fn review(&self, token: &str) -> Result<Identity, ReviewError> {
        let key = body_sha256(token.as_bytes());
        let now = Instant::now();
        if let Some(identity) = self.accepted.get(&key, now) {
            return Ok(identity);
        }
        if self.refused.get(&key, now).is_some() {
            return Err(ReviewError::Refused(AuthError::UnrecognizedClient));
        }
        // Concurrent misses of one token wait for the first one's review.
        let _one_review = self.stripes.lock(&key).await;
        let now = Instant::now();
        if let Some(identity) = self.accepted.get(&key, now) {
            return Ok(identity);
        }
        if self.refused.get(&key, now).is_some() {
            return Err(ReviewError::Refused(AuthError::UnrecognizedClient));
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        self.apiserver_requests
            .with_label_values(&["tokenreviews"])
            .inc();
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                ReviewError::Unavailable(LambdaError::Service(format!(
                    "cannot review the bearer token: {e}"
                )))
            })?;
        match identity_of(&answer, &self.audience) {
            Some(identity) => {
                self.accepted.insert(key, identity.clone(), Instant::now());
                Ok(identity)
            }
            None => {
                self.refused.insert(key, (), Instant::now());
                Err(ReviewError::Refused(AuthError::UnrecognizedClient))
            }
        }
    }
}

/// A refusal is the caller's (403); unavailability is ours (500, which the SDKs retry).
pub enum ReviewError {
    Refused(AuthError),
    Unavailable(LambdaError),
}

/// The identity in a TokenReview's answer, if it authenticated the token for `audience`. Pure.
pub fn identity_of(review: &TokenReview, audience: &str) -> Option<Identity> {
    let status = review.status.as_ref()?;
    if status.authenticated != Some(true) {
        return None;
    }
    // The apiserver answers with the audiences it checked; an answer that names others (an
    // authenticator that ignores audiences) does not count as ours.
    if let Some(audiences) = &status.audiences
        && !audiences.is_empty()
        && !audiences.iter().any(|a| a == audience)
    {
        return None;
    }
    let user = status.user.as_ref()?;
    let username = user.username.clone().filter(|u| !u.is_empty())?;
    Some(Identity {
        access_key_id: None,
        username,
        groups: user.groups.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(json: serde_json::Value) -> TokenReview {
        serde_json::from_value(serde_json::json!({"spec": {}, "status": json})).expect("review")
    }

    #[test]
    fn an_authenticated_token_for_our_audience_names_its_user() {
        let r = review(serde_json::json!({
            "authenticated": true,
            "audiences": ["lmi-router"],
            "user": {"username": "system:serviceaccount:a:b", "groups": ["system:serviceaccounts"]}
        }));
        let id = identity_of(&r, "lmi-router").expect("identity");
        assert_eq!(id.username, "system:serviceaccount:a:b");
        assert_eq!(id.access_key_id, None);
        assert!(identity_of(&r, "other").is_none(), "another audience");
    }

    #[test]
    fn an_unauthenticated_token_names_nobody() {
        let r = review(serde_json::json!({"authenticated": false, "error": "expired"}));
        assert!(identity_of(&r, "lmi-router").is_none());
    }
}
