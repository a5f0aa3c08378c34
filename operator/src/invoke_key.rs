//! The cluster's invoke key (see `lmi_crds::invoke_token`): read from the system namespace, or
//! drawn and stored there by the first operator that finds none.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use lmi_crds::invoke_token::{INVOKE_KEY_BYTES, INVOKE_KEY_FIELD, INVOKE_KEY_SECRET, InvokeKey};

use crate::error::{Error, Result};
use crate::plan::invoke_secrets::key_secret;

/// The key in the Secret of `namespace`, created first if there is none. Two operators starting
/// at once (an upgrade's old and new replica, another instance) both try to create it: the one
/// that loses reads the winner's, so every component ends up with one key.
pub async fn ensure(client: &kube::Client, namespace: &str) -> Result<InvokeKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(existing) = api.get_opt(INVOKE_KEY_SECRET).await? {
        return key_of(&existing, namespace);
    }
    let mut bytes = vec![0u8; INVOKE_KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Config(format!("no randomness for the invoke key: {e}")))?;
    match api
        .create(&PostParams::default(), &key_secret(namespace, &bytes))
        .await
    {
        Ok(_) => {
            tracing::info!(
                namespace,
                secret = INVOKE_KEY_SECRET,
                "created the invoke key"
            );
            InvokeKey::new(bytes).ok_or_else(|| Error::Config("empty invoke key".to_string()))
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(INVOKE_KEY_SECRET).await?;
            key_of(&existing, namespace)
        }
        Err(e) => Err(e.into()),
    }
}

/// [`ensure`] until it succeeds: the controllers cannot build a protected EE without the key, so
/// they wait for it (a missing namespace or permission is logged, and fixed without a restart).
pub async fn ensure_until_known(client: &kube::Client, namespace: &str) -> InvokeKey {
    let mut pause = Duration::from_secs(1);
    loop {
        match ensure(client, namespace).await {
            Ok(key) => return key,
            Err(e) => {
                tracing::warn!(namespace, secret = INVOKE_KEY_SECRET, error = %e,
                    "cannot read or create the invoke key (does the namespace exist? RBAC?); retrying");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

/// The key a Secret holds; a Secret without one is an error to fix by hand, never overwritten.
fn key_of(secret: &Secret, namespace: &str) -> Result<InvokeKey> {
    let key = secret
        .data
        .as_ref()
        .and_then(|d| d.get(INVOKE_KEY_FIELD))
        .and_then(|b| InvokeKey::new(b.0.clone()))
        .ok_or_else(|| {
            Error::Config(format!(
                "Secret {namespace}/{INVOKE_KEY_SECRET} has no field {INVOKE_KEY_FIELD:?}: delete it and the operator makes a new key"
            ))
        })?;
    if key.len() < INVOKE_KEY_BYTES {
        tracing::warn!(
            bytes = key.len(),
            "the invoke key is shorter than {INVOKE_KEY_BYTES} bytes"
        );
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_without_a_key_is_an_error_that_says_what_to_do() {
        let empty = key_secret("lmi-system", &[]);
        let err = key_of(&empty, "lmi-system").unwrap_err().to_string();
        assert!(err.contains("lmi-system/lmi-invoke-key"), "{err}");
        let good = key_secret("lmi-system", &[1u8; 32]);
        assert_eq!(
            key_of(&good, "lmi-system").unwrap(),
            InvokeKey::new(vec![1u8; 32]).unwrap()
        );
    }
}
