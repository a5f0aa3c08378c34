//! The access keys the router knows: Secrets of type `lmi.dev/access-key` in its system
//! namespace, kept by a watch (no API call per request). See `lmi_crds::access`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::watcher;
use lmi_crds::access::{
    ACCESS_KEY_ID, ACCESS_KEY_SECRET_TYPE, GROUPS, SECRET_ACCESS_KEY, USER, service_account_groups,
};
use tokio::sync::Notify;

use crate::Error;
use crate::auth::{Credential, Identity, KeyLookup, Scope, signing};

/// The group every authenticated user is in, as the apiserver adds it.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Access keys by id.
#[derive(Default)]
pub struct KeyStore {
    keys: RwLock<Arc<HashMap<String, Credential>>>,
    /// Signing keys derived from them, by (key id, scope): deriving one is four HMACs, a third of
    /// the verification's cost, and it changes once a day.
    /// The secret is part of the id, so a rotated secret never meets its predecessor's key.
    signing_keys: Mutex<HashMap<SigningKeyId, Vec<u8>>>,
}

/// (key id, secret, scope date, region).
type SigningKeyId = (String, String, String, String);

/// Signing keys kept at most (one per key and region and day in use).
const SIGNING_KEYS: usize = 10_000;

impl KeyLookup for KeyStore {
    fn lookup(&self, access_key_id: &str) -> Option<Credential> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(access_key_id).cloned()
    }

    fn signing_key(&self, access_key_id: &str, credential: &Credential, scope: &Scope) -> Vec<u8> {
        let id = (
            access_key_id.to_string(),
            credential.secret_access_key.clone(),
            scope.date.clone(),
            scope.region.clone(),
        );
        let mut cache = self.signing_keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = cache.get(&id) {
            return key.clone();
        }
        let key = signing::signing_key(
            &credential.secret_access_key,
            &scope.date,
            &scope.region,
            &scope.service,
        );
        // Yesterday's keys are of no more use: a full cache starts over.
        if cache.len() >= SIGNING_KEYS {
            cache.clear();
        }
        cache.insert(id, key.clone());
        key
    }
}

impl KeyStore {
    /// Replace the keys with those of `secrets`. A malformed Secret is skipped with a warning
    /// (naming the Secret, never its values); a key id in two Secrets is dropped from both,
    /// since either could be the one its owner meant.
    pub fn install(&self, secrets: &[Arc<Secret>]) {
        let next = keys_from(secrets);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        // A key's secret may have changed: derive again.
        self.signing_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn len(&self) -> usize {
        self.keys.read().map(|k| k.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The keys of `secrets`. Pure.
pub fn keys_from(secrets: &[Arc<Secret>]) -> HashMap<String, Credential> {
    let mut keys: HashMap<String, Credential> = HashMap::new();
    let mut duplicated: Vec<String> = Vec::new();
    for secret in secrets {
        let name = secret.metadata.name.clone().unwrap_or_default();
        match credential_of(secret) {
            Ok((id, credential)) => {
                if keys.insert(id.clone(), credential).is_some() {
                    tracing::warn!(secret = %name, access_key_id = %id, "access key id in more than one Secret: neither is used");
                    duplicated.push(id);
                }
            }
            Err(why) => tracing::warn!(secret = %name, "access-key Secret skipped: {why}"),
        }
    }
    for id in duplicated {
        keys.remove(&id);
    }
    keys
}

/// One Secret's key, or why it is not one.
pub fn credential_of(secret: &Secret) -> Result<(String, Credential), String> {
    if secret.type_.as_deref() != Some(ACCESS_KEY_SECRET_TYPE) {
        return Err(format!("its type is not {ACCESS_KEY_SECRET_TYPE}"));
    }
    let field = |key: &str| -> Result<String, String> {
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.clone())
            .or_else(|| {
                // stringData is write-only in the API, but a Secret built in a test may carry it.
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| v.clone().into_bytes())
            })
            .ok_or_else(|| format!("no data key {key}"))?;
        let text = String::from_utf8(value).map_err(|_| format!("{key} is not UTF-8"))?;
        Ok(text.trim().to_string())
    };
    let id = field(ACCESS_KEY_ID)?;
    let secret_access_key = field(SECRET_ACCESS_KEY)?;
    let user = field(USER)?;
    if id.is_empty() || secret_access_key.is_empty() || user.is_empty() {
        return Err(format!(
            "{ACCESS_KEY_ID}, {SECRET_ACCESS_KEY} and {USER} must not be empty"
        ));
    }
    // An id is one field of the SigV4 credential, which '/' separates.
    if id.contains('/') || id.chars().any(char::is_whitespace) {
        return Err(format!("{ACCESS_KEY_ID} must not contain '/' or spaces"));
    }
    let mut groups: Vec<String> = match field(GROUPS) {
        Ok(g) => g
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    };
    groups.extend(service_account_groups(&user));
    groups.push(AUTHENTICATED_GROUP.to_string());
    groups.sort();
    groups.dedup();
    Ok((
        id.clone(),
        Credential {
            secret_access_key,
            identity: Identity {
                access_key_id: Some(id),
                username: user,
                groups,
            },
        },
    ))
}

/// Watches the access-key Secrets of `namespace` into `store`. Returns once they are listed, so
/// the first signed request does not meet an empty store.
pub async fn watch(
    store: Arc<KeyStore>,
    client: kube::Client,
    namespace: &str,
) -> Result<(), Error> {
    let changed = Arc::new(Notify::new());
    let secrets = super::super::cluster::spawn_reflector(
        Api::<Secret>::namespaced(client, namespace),
        watcher::Config::default().fields(&format!("type={ACCESS_KEY_SECRET_TYPE}")),
        changed.clone(),
    );
    if tokio::time::timeout(Duration::from_secs(60), secrets.wait_until_ready())
        .await
        .is_err()
    {
        return Err(Error::Kube(format!(
            "access-key Secrets in namespace {namespace} not listed within 60 s (RBAC: the router needs list and watch on secrets there)"
        )));
    }
    store.install(&secrets.state());
    tracing::info!(namespace, keys = store.len(), "access keys loaded");
    tokio::spawn(async move {
        loop {
            changed.notified().await;
            store.install(&secrets.state());
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(name: &str, fields: &[(&str, &str)]) -> Arc<Secret> {
        Arc::new(Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            type_: Some(ACCESS_KEY_SECRET_TYPE.to_string()),
            data: Some(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        })
    }

    #[test]
    fn a_key_names_its_identity_and_groups() {
        let s = secret(
            "alice",
            &[
                ("accessKeyId", "LMIALICE"),
                ("secretAccessKey", "s3cret\n"),
                ("user", "alice"),
                ("groups", "dev, ops"),
            ],
        );
        let (id, c) = credential_of(&s).expect("a key");
        assert_eq!(id, "LMIALICE");
        assert_eq!(
            c.secret_access_key, "s3cret",
            "a trailing newline is not part of it"
        );
        assert_eq!(c.identity.username, "alice");
        assert_eq!(c.identity.groups, ["dev", "ops", "system:authenticated"]);
    }

    #[test]
    fn a_service_account_key_gets_the_service_account_groups() {
        let s = secret(
            "ci",
            &[
                ("accessKeyId", "LMICI"),
                ("secretAccessKey", "x"),
                ("user", "system:serviceaccount:team-a:ci"),
            ],
        );
        let (_, c) = credential_of(&s).expect("a key");
        assert!(
            c.identity
                .groups
                .contains(&"system:serviceaccounts:team-a".to_string())
        );
    }

    #[test]
    fn malformed_and_duplicate_keys_are_not_used() {
        let ok = secret(
            "a",
            &[
                ("accessKeyId", "A"),
                ("secretAccessKey", "x"),
                ("user", "a"),
            ],
        );
        let missing = secret("b", &[("accessKeyId", "B"), ("user", "b")]);
        let slash = secret(
            "c",
            &[
                ("accessKeyId", "C/1"),
                ("secretAccessKey", "x"),
                ("user", "c"),
            ],
        );
        let dup1 = secret(
            "d1",
            &[
                ("accessKeyId", "D"),
                ("secretAccessKey", "x"),
                ("user", "d"),
            ],
        );
        let dup2 = secret(
            "d2",
            &[
                ("accessKeyId", "D"),
                ("secretAccessKey", "y"),
                ("user", "e"),
            ],
        );
        let keys = keys_from(&[ok, missing, slash, dup1, dup2]);
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["A"]);
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let s = secret(
            "a",
            &[
                ("accessKeyId", "A"),
                ("secretAccessKey", "hunter2"),
                ("user", "a"),
            ],
        );
        let (_, c) = credential_of(&s).expect("a key");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
