//! What the router knows: functions, their versions and aliases, each version's state and ready
//! EEs. Built from a source (static file or the cluster) and swapped in whole; resolution is pure
//! (an alias's weighted choice takes its random draw as an argument).

use lmi_crds::State;
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
    /// The function's aliases (qualifiers other than version numbers).
    #[serde(default)]
    pub aliases: Vec<AliasSpec>,
    /// Retries, maximum age and destinations of its `Event` invocations (the Function's
    /// `spec.eventInvokeConfig`); unset: Lambda's defaults, no destinations.
    #[serde(default)]
    pub event_invoke_config: Option<lmi_crds::EventInvokeConfig>,
    /// The function's URL (`crate::url`), if it has one.
    #[serde(default)]
    pub url: Option<crate::url::UrlConfig>,
}

/// An alias: a name for a version, and optionally a second version taking a share of the
/// invocations (Lambda's routing config, at most one additional version).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AliasSpec {
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub additional_version: Option<WeightedVersion>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedVersion {
    pub version: u32,
    /// The share of invocations this version takes, in [0, 1).
    pub weight: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionSpec {
    pub version: u32,
    /// Lambda version state: Active, Pending, Failed, Deactivating, Deactivated, ...
    #[serde(default = "active")]
    pub state: State,
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
fn active() -> State {
    State::Active
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
    pub state: State,
    pub timeout: Duration,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The function's invoke token, sent to its EEs (marked sensitive: not printed). Computed once
    /// per catalog build, not per invocation.
    pub invoke_token: Option<http::HeaderValue>,
}

/// An alias as resolution uses it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Alias {
    version: u32,
    additional: Option<WeightedVersion>,
}

impl Alias {
    /// The version one invocation runs: the additional version when `draw` (uniform in [0, 1))
    /// falls below its weight, else the alias's version.
    fn pick(&self, draw: f64) -> u32 {
        match self.additional {
            Some(w) if draw < w.weight => w.version,
            _ => self.version,
        }
    }
}

#[derive(Debug, Default)]
struct FunctionEntry {
    versions: BTreeMap<u32, Version>,
    aliases: HashMap<String, Alias>,
    event_invoke_config: Option<lmi_crds::EventInvokeConfig>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    functions: HashMap<(String, String), FunctionEntry>,
    /// Function URLs by id.
    urls: HashMap<String, UrlTarget>,
}

/// What a function URL calls.
#[derive(Debug, Clone)]
pub struct UrlTarget {
    pub namespace: String,
    pub name: String,
    pub config: crate::url::UrlConfig,
}

impl Catalog {
    /// A function's event invoke config: None when the function is unknown, Some(None) when it
    /// sets none.
    pub fn event_config(
        &self,
        namespace: &str,
        function: &str,
    ) -> Option<Option<&lmi_crds::EventInvokeConfig>> {
        self.functions
            .get(&(namespace.to_string(), function.to_string()))
            .map(|f| f.event_invoke_config.as_ref())
    }

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
        for entry in previous.functions.values() {
            for v in entry.versions.values() {
                for e in &v.endpoints {
                    known.insert(e.addr.as_str(), e.clone());
                }
            }
        }
        let mut functions: HashMap<(String, String), FunctionEntry> = HashMap::new();
        let mut urls: HashMap<String, UrlTarget> = HashMap::new();
        for f in &spec.functions {
            if let Some(config) = &f.url {
                urls.insert(
                    crate::url::url_id(&f.namespace, &f.name),
                    UrlTarget {
                        namespace: f.namespace.clone(),
                        name: f.name.clone(),
                        config: config.clone(),
                    },
                );
            }
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
            let entry = functions
                .entry((f.namespace.clone(), f.name.clone()))
                .or_default();
            entry.event_invoke_config = f.event_invoke_config.clone();
            for a in &f.aliases {
                entry
                    .aliases
                    .insert(a.name.clone(), alias(a, &f.namespace, &f.name)?);
            }
            let versions = &mut entry.versions;
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
                        state: v.state,
                        timeout: Duration::from_secs_f64(v.timeout_seconds),
                        endpoints,
                        invoke_token: invoke_token.clone(),
                    },
                );
            }
        }
        Ok(Catalog { functions, urls })
    }

    /// The function a URL id calls.
    pub fn url(&self, id: &str) -> Option<&UrlTarget> {
        self.urls.get(id)
    }

    /// Find the version an invocation runs on, or the Lambda error saying why there is none.
    /// `draw`, uniform in [0, 1), decides an alias's weighted choice (the caller passes
    /// [`crate::ids::random_unit`]; tests pass fixed numbers).
    pub fn resolve(
        &self,
        f: &FunctionRef,
        region: &str,
        draw: f64,
    ) -> Result<&Version, LambdaError> {
        // For an alias this is the alias's ARN, also when the version it picked is missing.
        let not_found = || {
            LambdaError::ResourceNotFound(format!("Function not found: {}", f.invoked_arn(region)))
        };
        let entry = self
            .functions
            .get(&(f.namespace.clone(), f.name.clone()))
            .ok_or_else(not_found)?;
        let versions = &entry.versions;
        let version = match &f.qualifier {
            Qualifier::Version(n) => versions.get(n).ok_or_else(not_found)?,
            Qualifier::Alias(name) => {
                let alias = entry.aliases.get(name).ok_or_else(not_found)?;
                versions.get(&alias.pick(draw)).ok_or_else(not_found)?
            }
            // The rule the Function's status.currentVersion follows too.
            Qualifier::LatestPublished => lmi_crds::rules::current_version(
                versions
                    .values()
                    .map(|v| (v.number, v.state == State::Active)),
            )
            .and_then(|n| versions.get(&n))
            .ok_or_else(not_found)?,
        };
        if version.state != State::Active {
            return Err(LambdaError::ResourceNotReady(format!(
                "The operation cannot be performed at this time. The function is currently in \
                 the following state: {}",
                version.state.as_str()
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

    /// Ready EEs of every version: where invocations may go.
    pub fn endpoint_count(&self) -> usize {
        self.functions
            .values()
            .flat_map(|f| f.versions.values())
            .map(|v| v.endpoints.len())
            .sum()
    }
}

/// Check an alias of function `namespace/name` (the static file is written by hand; the cluster's
/// CRD rules make the same checks).
fn alias(a: &AliasSpec, namespace: &str, name: &str) -> Result<Alias, String> {
    if let Some(w) = a.additional_version {
        if !(0.0..1.0).contains(&w.weight) {
            return Err(format!(
                "{namespace}/{name} alias {}: the additional version's weight must be in [0, 1)",
                a.name
            ));
        }
        if w.version == a.version {
            return Err(format!(
                "{namespace}/{name} alias {}: the additional version must differ from the \
                 alias's version",
                a.name
            ));
        }
    }
    Ok(Alias {
        version: a.version,
        additional: a.additional_version,
    })
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
        c.resolve(&f, "us-east-1", 0.5).map(|v| v.number)
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
        let ep = a.resolve(&f, "r", 0.5).expect("resolve").endpoints[0].clone();
        let _guard = ep.begin();
        let b = Catalog::build(&spec(), &a, 8, None).expect("rebuild");
        assert_eq!(
            b.resolve(&f, "r", 0.5).expect("resolve").endpoints[0].in_flight(),
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
            let entry = &c.functions[&(f.namespace.clone(), f.name.clone())];
            entry
                .versions
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
                .resolve(&f, "r", 0.5)
                .expect("resolve")
                .invoke_token
                .is_none()
        );
        // The static file names a function's token as `invokeToken`.
        let file: CatalogSpec =
            serde_yaml::from_str("functions: [{name: x, invokeToken: abc}]").expect("yaml");
        assert_eq!(file.functions[0].invoke_token.as_deref(), Some("abc"));
    }

    fn aliased() -> Catalog {
        let spec: CatalogSpec = serde_yaml::from_str(
            r#"
functions:
  - name: hello
    versions:
      - {version: 1, endpoints: ["127.0.0.1:1"]}
      - {version: 2, endpoints: ["127.0.0.1:2"]}
      - {version: 3, state: Pending}
    aliases:
      - {name: live, version: 1, additionalVersion: {version: 2, weight: 0.1}}
      - {name: stable, version: 2}
      - {name: next, version: 3}
      - {name: gone, version: 7}
      - {name: canary-gone, version: 1, additionalVersion: {version: 9, weight: 0.5}}
"#,
        )
        .expect("yaml");
        Catalog::build(&spec, &Catalog::default(), 8, None).expect("build")
    }

    fn at(c: &Catalog, name: &str, draw: f64) -> Result<u32, LambdaError> {
        let f = parse(name, None, "default")?;
        c.resolve(&f, "us-east-1", draw).map(|v| v.number)
    }

    #[test]
    fn an_alias_resolves_to_its_version_or_by_weight_to_the_additional_one() {
        let c = aliased();
        assert_eq!(at(&c, "hello:stable", 0.0), Ok(2));
        assert_eq!(at(&c, "hello:stable", 0.99), Ok(2));
        // Weight 0.1: draws below it run version 2, the rest version 1.
        assert_eq!(at(&c, "hello:live", 0.0), Ok(2));
        assert_eq!(at(&c, "hello:live", 0.0999), Ok(2));
        assert_eq!(at(&c, "hello:live", 0.1), Ok(1));
        assert_eq!(at(&c, "hello:live", 0.999), Ok(1));
        // As an ARN and with ?Qualifier= too.
        let f = parse(
            "arn:aws:lambda:us-east-1:123456789012:function:hello",
            Some("live"),
            "default",
        )
        .expect("parse");
        assert_eq!(c.resolve(&f, "us-east-1", 0.5).map(|v| v.number), Ok(1));
    }

    #[test]
    fn an_alias_answers_like_the_version_it_picked_or_not_found_with_its_arn() {
        let c = aliased();
        assert!(
            matches!(at(&c, "hello:next", 0.5), Err(LambdaError::ResourceNotReady(m)) if m.contains("Pending"))
        );
        let alias_arn = |m: &str, alias: &str| m.ends_with(&format!(":function:hello:{alias}"));
        assert!(
            matches!(at(&c, "hello:gone", 0.5), Err(LambdaError::ResourceNotFound(m)) if alias_arn(&m, "gone"))
        );
        assert!(
            matches!(at(&c, "hello:nope", 0.5), Err(LambdaError::ResourceNotFound(m)) if alias_arn(&m, "nope"))
        );
        // Only the draws that pick the missing additional version fail.
        assert_eq!(at(&c, "hello:canary-gone", 0.7), Ok(1));
        assert!(matches!(
            at(&c, "hello:canary-gone", 0.2),
            Err(LambdaError::ResourceNotFound(m)) if alias_arn(&m, "canary-gone")
        ));
    }

    #[test]
    fn the_real_random_source_splits_by_the_weight() {
        let c = aliased();
        let draws = 10_000;
        let to_2 = (0..draws)
            .filter(|_| at(&c, "hello:live", crate::ids::random_unit()) == Ok(2))
            .count();
        let share = to_2 as f64 / f64::from(draws);
        assert!((share - 0.1).abs() <= 0.015, "share of version 2: {share}");
    }

    #[test]
    fn rejects_bad_aliases() {
        for bad in [
            "{name: a, version: 1, additionalVersion: {version: 2, weight: 1.0}}",
            "{name: a, version: 1, additionalVersion: {version: 2, weight: -0.1}}",
            "{name: a, version: 1, additionalVersion: {version: 1, weight: 0.5}}",
        ] {
            let spec: CatalogSpec =
                serde_yaml::from_str(&format!("functions: [{{name: x, aliases: [{bad}]}}]"))
                    .expect("yaml");
            assert!(
                Catalog::build(&spec, &Catalog::default(), 8, None).is_err(),
                "{bad}"
            );
        }
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
