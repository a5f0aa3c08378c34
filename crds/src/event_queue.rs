//! Where Event invocations are stored in NATS JetStream, and how to reach it: what the router
//! (which stores and dispatches them) and the operator (which counts them per function) share.

use std::path::PathBuf;

/// The stream of events.
pub const STREAM: &str = "LMI_EVENTS";
/// Events are published to `lmi.events.<namespace>.<function>`.
pub const SUBJECT_PREFIX: &str = "lmi.events";

/// The subject of a function's events.
pub fn subject(namespace: &str, function: &str) -> String {
    format!("{SUBJECT_PREFIX}.{namespace}.{function}")
}

/// The namespace and function of an events subject.
pub fn function_of(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix(SUBJECT_PREFIX)?.strip_prefix('.')?;
    let (namespace, function) = rest.split_once('.')?;
    (!namespace.is_empty() && !function.is_empty() && !function.contains('.'))
        .then_some((namespace, function))
}

/// How the router and the operator reach NATS besides its URL (which may carry a user and
/// password or a token): files mounted from Secrets, named by the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsFiles {
    /// `LMI_NATS_CREDENTIALS_FILE`: a NATS credentials file (user JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    /// `LMI_NATS_CA_FILE`: the CA that signed the server's certificate (TLS is then required).
    pub ca: Option<PathBuf>,
    /// `LMI_NATS_CLIENT_CERT_FILE` and `LMI_NATS_CLIENT_KEY_FILE`: a client certificate, for a
    /// server that verifies its clients (mutual TLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The environment variables [`NatsFiles`] reads.
pub const CREDENTIALS_FILE_ENV: &str = "LMI_NATS_CREDENTIALS_FILE";
pub const CA_FILE_ENV: &str = "LMI_NATS_CA_FILE";
pub const CLIENT_CERT_FILE_ENV: &str = "LMI_NATS_CLIENT_CERT_FILE";
pub const CLIENT_KEY_FILE_ENV: &str = "LMI_NATS_CLIENT_KEY_FILE";

impl NatsFiles {
    /// From the environment read through `env`; empty values count as unset. A client
    /// certificate needs its key and the other way round.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let path = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let client_cert = match (path(CLIENT_CERT_FILE_ENV), path(CLIENT_KEY_FILE_ENV)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(format!(
                    "{CLIENT_CERT_FILE_ENV} and {CLIENT_KEY_FILE_ENV} go together: set both or neither"
                ));
            }
        };
        Ok(Self {
            credentials: path(CREDENTIALS_FILE_ENV),
            ca: path(CA_FILE_ENV),
            client_cert,
        })
    }

    /// Connects as `name` (shown in NATS's connection list), retrying in the background while
    /// the server is away.
    #[cfg(feature = "nats-client")]
    pub async fn connect(&self, url: &str, name: &str) -> Result<async_nats::Client, String> {
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect();
        if let Some(path) = &self.credentials {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| format!("{CREDENTIALS_FILE_ENV} {}: {e}", path.display()))?;
        }
        if let Some(path) = &self.ca {
            options = options
                .add_root_certificates(path.clone())
                .require_tls(true);
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options
            .connect(url)
            .await
            .map_err(|e| format!("NATS at {url}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_names_its_function() {
        let s = subject("team-a", "orders");
        assert_eq!(s, "lmi.events.team-a.orders");
        assert_eq!(function_of(&s), Some(("team-a", "orders")));
        assert_eq!(function_of("lmi.events.team-a"), None);
        assert_eq!(function_of("other.team-a.orders"), None);
    }

    #[test]
    fn nats_files_come_from_the_environment_and_a_client_cert_needs_its_key() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(NatsFiles::from_env(env(&[])), Ok(NatsFiles::default()));
        let files = NatsFiles::from_env(env(&[
            (CREDENTIALS_FILE_ENV, "/nats/creds"),
            (CA_FILE_ENV, "/nats/ca.crt"),
            (CLIENT_CERT_FILE_ENV, "/nats/tls.crt"),
            (CLIENT_KEY_FILE_ENV, "/nats/tls.key"),
        ]))
        .expect("all set");
        assert_eq!(files.credentials, Some(PathBuf::from("/nats/creds")));
        assert_eq!(files.ca, Some(PathBuf::from("/nats/ca.crt")));
        assert_eq!(
            files.client_cert,
            Some((
                PathBuf::from("/nats/tls.crt"),
                PathBuf::from("/nats/tls.key")
            ))
        );
        let half = NatsFiles::from_env(env(&[(CLIENT_CERT_FILE_ENV, "/nats/tls.crt")]));
        assert!(half.is_err_and(|e| e.contains(CLIENT_KEY_FILE_ENV)));
        // Empty values (a chart's unset option) are unset.
        assert_eq!(
            NatsFiles::from_env(env(&[(CA_FILE_ENV, "")])),
            Ok(NatsFiles::default())
        );
    }
}
