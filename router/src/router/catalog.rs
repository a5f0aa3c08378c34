//! What the router knows: functions, their versions, each version's state and ready EEs. Built from
//! a source (static file or the cluster) and swapped in whole; resolution is pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;

use lmi_crds::invoke_token::InvokeKey;

use crate::function_name::{FunctionRef, Qualifier};
use crate::lambda_error::LambdaError;

/// A source's view of the world, before it becomes a [`Catalog`]. Also the static file's format.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogSpec {
    #[serde(default)]
    pub functions: Vec<FunctionSpec>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FunctionSpec {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub versions: Vec<VersionSpec>,
    /// The token the function's EEs require (`x-lmi-invoke-token`); without it the router derives
    /// it from the invoke key, if it has one (the cluster source always leaves it out).
    #[serde(default)]
    pub invoke_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionSpec {
    pub version: u32,
    /// Lambda version state: Active, Pending, Failed, Deactivating, Deactivated, ...
    #[serde(default = "active")]
    pub state: String,
    /// Function timeout; the router waits a little longer than this for an EE's answer.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Ready EEs, as `host:port` of their sidecar's invoke endpoint.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

fn default_namespace() -> String {
    "default".to_string()
}
fn active() -> String {
    "Active".to_string()
}
fn default_timeout() -> f64 {
    3.0
}

/// One EE as the router sees it. Shared across catalog rebuilds (by address) so its in-flight count
/// survives them.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: String,
    pub uri: http::Uri,
    in_flight: AtomicUsize,
    /// Connections to this EE open at once, at most (one invocation each: HTTP/1.1). The client
    /// pool keeps as many idle, so they are reused.
    pub connections: Arc<tokio::sync::Semaphore>,
}

impl Endpoint {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// Count one invocation in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

pub struct InFlight(Arc<Endpoint>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct Version {
    pub number: u32,
    pub state: String,
    pub timeout: Duration,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The function's invoke token, sent to its EEs (marked sensitive: not printed). Computed once
    /// per catalog build, not per invocation.
    pub invoke_token: Option<http::HeaderValue>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    functions: HashMap<(String, String), BTreeMap<u32, Version>>,
}

impl Catalog {
    /// Build from a spec, reusing `previous`'s endpoints (and so their in-flight counts).
    /// `pool` is the most connections (so invocations) this router opens to one EE at once;
    /// `key` the invoke key the functions' tokens derive from.
    pub fn build(
        spec: &CatalogSpec,
        previous: &Catalog,
        pool: usize,
        key: Option<&InvokeKey>,
    ) -> Result<Catalog, String> {
        let mut known: HashMap<&str, Arc<Endpoint>> = HashMap::new();
        for versions in previous.functions.values() {
            for v in versions.values() {
                for e in &v.endpoints {
                    known.insert(e.addr.as_str(), e.clone());
                }
            }
        }
        let mut functions: HashMap<(String, String), BTreeMap<u32, Version>> = HashMap::new();
        for f in &spec.functions {
            let token = f
                .invoke_token
                .clone()
                .or_else(|| key.map(|k| k.function_token(&f.namespace, &f.name)));
            let invoke_token = match token {
                Some(t) => {
                    let mut v = http::HeaderValue::from_str(&t).map_err(|_| {
                        format!(
                            "{}/{}: the invoke token is not a header value",
                            f.namespace, f.name
                        )
                    })?;
                    v.set_sensitive(true);
                    Some(v)
                }
                None => None,
            };
            let versions = functions
                .entry((f.namespace.clone(), f.name.clone()))
                .or_default();
            for v in &f.versions {
                let mut endpoints = Vec::with_capacity(v.endpoints.len());
                for addr in &v.endpoints {
                    let ep = match known.get(addr.as_str()) {
                        Some(e) => e.clone(),
                        None => {
                            let uri: http::Uri =
                                format!("http://{addr}{}", crate::wire::INVOKE_PATH)
                                    .parse()
                                    .map_err(|_| format!("bad endpoint address {addr:?}"))?;
                            Arc::new(Endpoint {
                                addr: addr.clone(),
                                uri,
                                in_flight: AtomicUsize::new(0),
                                connections: Arc::new(tokio::sync::Semaphore::new(pool)),
                            })
                        }
                    };
                    endpoints.push(ep);
                }
                if !(v.timeout_seconds > 0.0 && v.timeout_seconds <= 900.0) {
                    return Err(format!(
                        "{}/{} version {}: timeoutSeconds must be in (0, 900]",
                        f.namespace, f.name, v.version
                    ));
                }
                versions.insert(
                    v.version,
                    Version {
                        number: v.version,
                        state: v.state.clone(),
                        timeout: Duration::from_secs_f64(v.timeout_seconds),
                        endpoints,
                        invoke_token: invoke_token.clone(),
                    },
                );
            }
        }
        Ok(Catalog { functions })
    }

    /// Find the version an invocation runs on, or the Lambda error saying why there is none.
    pub fn resolve(&self, f: &FunctionRef, region: &str) -> Result<&Version, LambdaError> {
        let not_found = || {
            LambdaError::ResourceNotFound(format!("Function not found: {}", f.invoked_arn(region)))
        };
        let versions = self
            .functions
            .get(&(f.namespace.clone(), f.name.clone()))
            .ok_or_else(not_found)?;
        let version = match &f.qualifier {
            Qualifier::Version(n) => versions.get(n).ok_or_else(not_found)?,
            // Aliases do not exist yet.
            Qualifier::Alias(_) => return Err(not_found()),
            // The newest Active version, so a version still being deployed does not take traffic
            // before its EEs are up; if none is Active, report the newest one's state.
            Qualifier::LatestPublished => versions
                .values()
                .rev()
                .find(|v| v.state == "Active")
                .or_else(|| versions.values().next_back())
                .ok_or_else(not_found)?,
        };
        if version.state != "Active" {
            return Err(LambdaError::ResourceNotReady(format!(
                "The operation cannot be performed at this time. The function is currently in \
                 the following state: {}",
                version.state
            )));
        }
        if version.endpoints.is_empty() {
            return Err(LambdaError::ResourceNotReady(
                "The operation cannot be performed at this time. The function version has no \
                 ready execution environment."
                    .to_string(),
            ));
        }
        Ok(version)
    }

    pub fn function_count(&self) -> usize {
        self.functions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function_name::parse;

    fn spec() -> CatalogSpec {
        serde_yaml::from_str(
            r#"
functions:
  - name: hello
    versions:
      - {version: 1, endpoints: ["127.0.0.1:1", "127.0.0.1:2"]}
      - {version: 2, state: Pending}
      - {version: 3, state: Active, endpoints: []}
  - namespace: team-a
    name: other
    versions:
      - {version: 1, state: Failed}
"#,
        )
        .expect("yaml")
    }

    fn resolve(c: &Catalog, name: &str) -> Result<u32, LambdaError> {
        let f = parse(name, None, "default")?;
        c.resolve(&f, "us-east-1").map(|v| v.number)
    }

    #[test]
    fn resolves_versions_and_latest_published() {
        let c = Catalog::build(&spec(), &Catalog::default(), 8, None).expect("build");
        assert_eq!(resolve(&c, "hello:1"), Ok(1));
        // Latest published = newest Active (3), which has no ready EE.
        assert!(matches!(
            resolve(&c, "hello"),
            Err(LambdaError::ResourceNotReady(_))
        ));
        assert!(
            matches!(resolve(&c, "hello:2"), Err(LambdaError::ResourceNotReady(m)) if m.contains("Pending"))
        );
        assert!(matches!(
            resolve(&c, "hello:9"),
            Err(LambdaError::ResourceNotFound(_))
        ));
        assert!(matches!(
            resolve(&c, "hello:live"),
            Err(LambdaError::ResourceNotFound(_))
        ));
        assert!(
            matches!(resolve(&c, "nope"), Err(LambdaError::ResourceNotFound(m)) if m.ends_with(":function:nope"))
        );
        assert!(
            matches!(resolve(&c, "team-a/other"), Err(LambdaError::ResourceNotReady(m)) if m.contains("Failed"))
        );
    }

    #[test]
    fn rebuild_keeps_in_flight_counts() {
        let a = Catalog::build(&spec(), &Catalog::default(), 8, None).expect("build");
        let f = parse("hello:1", None, "default").expect("parse");
        let ep = a.resolve(&f, "r").expect("resolve").endpoints[0].clone();
        let _guard = ep.begin();
        let b = Catalog::build(&spec(), &a, 8, None).expect("rebuild");
        assert_eq!(
            b.resolve(&f, "r").expect("resolve").endpoints[0].in_flight(),
            1
        );
    }

    #[test]
    fn each_function_gets_its_token_from_the_spec_or_the_key() {
        let mut s = spec();
        s.functions[1].invoke_token = Some("given".to_string());
        let key = InvokeKey::new(vec![1u8; 32]).expect("key");
        let c = Catalog::build(&s, &Catalog::default(), 8, Some(&key)).expect("build");
        let token = |name: &str, version: &str| {
            let f = parse(&format!("{name}:{version}"), None, "default").expect("parse");
            let versions = &c.functions[&(f.namespace.clone(), f.name.clone())];
            versions
                .values()
                .next()
                .and_then(|v| v.invoke_token.clone())
        };
        let derived = token("hello", "1").expect("derived");
        assert_eq!(derived, key.function_token("default", "hello").as_str());
        assert!(derived.is_sensitive());
        assert!(!format!("{derived:?}").contains(&key.function_token("default", "hello")));
        assert_eq!(token("team-a/other", "1").expect("given"), "given");
        let without = Catalog::build(&spec(), &Catalog::default(), 8, None).expect("build");
        let f = parse("hello:1", None, "default").expect("parse");
        assert!(
            without
                .resolve(&f, "r")
                .expect("resolve")
                .invoke_token
                .is_none()
        );
        // The static file names a function's token as `invokeToken`.
        let file: CatalogSpec =
            serde_yaml::from_str("functions: [{name: x, invokeToken: abc}]").expect("yaml");
        assert_eq!(file.functions[0].invoke_token.as_deref(), Some("abc"));
    }

    #[test]
    fn rejects_bad_spec() {
        let bad: CatalogSpec = serde_yaml::from_str(
            "functions: [{name: x, versions: [{version: 1, timeoutSeconds: 0}]}]",
        )
        .expect("yaml");
        assert!(Catalog::build(&bad, &Catalog::default(), 8, None).is_err());
        assert!(serde_yaml::from_str::<CatalogSpec>("functions: [{name: x, typo: 1}]").is_err());
    }
}
