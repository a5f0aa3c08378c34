//! `lmi-router`: the Lambda Invoke API front door. See docs/data-plane.md.

pub mod access;
pub mod api;
pub mod catalog;
pub mod cluster;
pub mod events;
pub mod memory;
pub mod metrics;
pub mod response_stream;
pub mod static_file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::{Error, http_server};
use catalog::{Catalog, CatalogSpec};
use lmi_crds::invoke_token::InvokeKey;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// Namespace for function names that do not carry one.
    pub default_namespace: String,
    /// Region shown in ARNs.
    pub region: String,
    /// EEs tried per invocation before answering 429.
    pub max_attempts: usize,
    pub retry_after_secs: u32,
    /// Static catalog file; without it the router watches the cluster.
    pub static_file: Option<PathBuf>,
    /// Port of the sidecars' invoke endpoint on EE pods (cluster source).
    pub sidecar_port: u16,
    /// Request payload bytes held at once, in MiB (see `Router::payload_budget`).
    pub payload_budget_mib: usize,
    /// Client connections open at once; past it a connection gets a canned 429 and is closed.
    pub max_connections: usize,
    /// Invocations in progress at once; past it an invocation gets a 429 before its payload is read.
    pub max_in_flight: usize,
    /// Connections (so invocations) to one EE at once, reused through the pool.
    pub ee_connections: usize,
    /// Authenticate and authorize every Invoke (`--auth on`, the default). `--auth off` lets
    /// every caller that reaches the router invoke every function: only for a trusted network.
    pub auth: bool,
    /// Namespace of the router's own objects, e.g. the access-key Secrets (`--system-namespace`;
    /// default `POD_NAMESPACE`, else `lmi-system`).
    pub system_namespace: String,
    /// Audience a Kubernetes bearer token must be issued for (`--token-audience`).
    pub token_audience: String,
    /// Regions a SigV4 credential scope may name (`--allowed-regions a,b`); empty allows any.
    pub allowed_regions: Vec<String>,
    /// A file holding the invoke key's bytes: used instead of the cluster's Secret (static
    /// catalogs, local runs).
    pub invoke_key_file: Option<PathBuf>,
    /// The event queue (`--nats-url`, `--event-*`); without it `Event` invocations answer 400.
    pub events: Option<events::EventSettings>,
    /// Where function URLs are served (`--url-listen`); none: no URL listener.
    pub url_listen: Option<SocketAddr>,
    /// The URLs' domain (`--url-domain`): `<url-id>.<domain>` names a URL.
    pub url_domain: String,
}

/// The namespace of the LMI Secrets when neither `--system-namespace` nor `POD_NAMESPACE` says.
pub const DEFAULT_SYSTEM_NAMESPACE: &str = "lmi-system";

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            default_namespace: "default".to_string(),
            region: "us-east-1".to_string(),
            max_attempts: 3,
            retry_after_secs: 1,
            static_file: None,
            sidecar_port: lmi_crds::ee_contract::SIDECAR_PORT,
            payload_budget_mib: memory::DEFAULT_PAYLOAD_BUDGET_MIB,
            max_connections: memory::DEFAULT_MAX_CONNECTIONS,
            max_in_flight: memory::DEFAULT_MAX_IN_FLIGHT,
            ee_connections: DEFAULT_EE_CONNECTIONS,
            auth: true,
            system_namespace: DEFAULT_SYSTEM_NAMESPACE.to_string(),
            token_audience: DEFAULT_TOKEN_AUDIENCE.to_string(),
            allowed_regions: Vec::new(),
            invoke_key_file: None,
            events: None,
            url_listen: None,
            url_domain: DEFAULT_URL_DOMAIN.to_string(),
        }
    }
}

/// The URLs' domain when `--url-domain` names none.
pub const DEFAULT_URL_DOMAIN: &str = "lambda-url.localhost";

impl Config {
    /// Parse `--flag value` arguments, then the environment read through `env`: with
    /// `LMI_MEMORY_LIMIT_MIB` (the container's limit, from the downward API) and no
    /// `--payload-budget-mib`, the payload budget is what fits that limit (see [`memory`]).
    pub fn from_args_and_env(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let mut c = Self::from_args(args)?;
        if !args.iter().any(|a| a == "--system-namespace")
            && let Some(ns) = env("POD_NAMESPACE").filter(|v| !v.is_empty())
        {
            c.system_namespace = ns;
        }
        if !args.iter().any(|a| a == "--nats-url")
            && let Some(url) = env("LMI_NATS_URL").filter(|v| !v.is_empty())
        {
            c.events = Some(events::EventSettings {
                url,
                ..c.events
                    .clone()
                    .unwrap_or_else(|| events::EventSettings::new(String::new()))
            });
        }
        if let Some(events) = c.events.as_mut() {
            events.files =
                lmi_crds::event_queue::NatsFiles::from_env(&env).map_err(Error::Config)?;
        }
        let budget_given = args.iter().any(|a| a == "--payload-budget-mib");
        if let Some(v) = env("LMI_MEMORY_LIMIT_MIB").filter(|v| !v.is_empty())
            && !budget_given
        {
            let limit: u64 = v.parse().map_err(|_| {
                Error::Config(format!("LMI_MEMORY_LIMIT_MIB={v}: not a number of MiB"))
            })?;
            c.payload_budget_mib = memory::payload_budget_for_limit(limit, &c)
                .map_err(|e| Error::Config(format!("LMI_MEMORY_LIMIT_MIB={v}: {e}")))?;
        }
        Ok(c)
    }

    /// Parse `--flag value` arguments.
    pub fn from_args(args: &[String]) -> Result<Config, Error> {
        let mut c = Config::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| Error::Config(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--listen" => {
                    let v = value()?;
                    c.listen_addr = v
                        .parse()
                        .map_err(|_| Error::Config(format!("--listen {v}: not host:port")))?;
                }
                "--url-listen" => {
                    let v = value()?;
                    c.url_listen =
                        Some(v.parse().map_err(|_| {
                            Error::Config(format!("--url-listen {v}: not host:port"))
                        })?);
                }
                "--url-domain" => c.url_domain = value()?.trim_matches('.').to_ascii_lowercase(),
                "--default-namespace" => c.default_namespace = value()?,
                "--region" => c.region = value()?,
                "--max-attempts" => {
                    let v = value()?;
                    c.max_attempts =
                        v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                            Error::Config(format!("--max-attempts {v}: need >= 1"))
                        })?;
                }
                "--retry-after" => {
                    let v = value()?;
                    c.retry_after_secs = v
                        .parse()
                        .map_err(|_| Error::Config(format!("--retry-after {v}: not seconds")))?;
                }
                "--static" => c.static_file = Some(PathBuf::from(value()?)),
                "--system-namespace" => c.system_namespace = value()?,
                "--invoke-key-file" => c.invoke_key_file = Some(PathBuf::from(value()?)),
                "--payload-budget-mib" => {
                    let v = value()?;
                    c.payload_budget_mib = v
                        .parse()
                        .ok()
                        .filter(|n| (7..=1 << 20).contains(n))
                        .ok_or_else(|| {
                            Error::Config(format!("--payload-budget-mib {v}: need 7 to 1048576"))
                        })?;
                }
                "--max-connections" => c.max_connections = count(flag, &value()?, 1)?,
                "--max-in-flight" => c.max_in_flight = count(flag, &value()?, 1)?,
                "--ee-connections" => c.ee_connections = count(flag, &value()?, 1)?,
                "--auth" => {
                    let v = value()?;
                    c.auth = match v.as_str() {
                        "on" => true,
                        "off" => false,
                        _ => return Err(Error::Config(format!("--auth {v}: need on or off"))),
                    };
                }
                "--token-audience" => c.token_audience = value()?,
                "--allowed-regions" => {
                    c.allowed_regions = value()?
                        .split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_string)
                        .collect();
                }
                "--nats-url" => {
                    let url = value()?;
                    c.events = Some(events::EventSettings {
                        url,
                        ..c.events
                            .clone()
                            .unwrap_or_else(|| events::EventSettings::new(String::new()))
                    });
                }
                "--event-retry-delays-seconds" => {
                    let v = value()?;
                    let delays: Option<Vec<Duration>> = v
                        .split(',')
                        .map(|s| {
                            s.trim()
                                .parse::<f64>()
                                .ok()
                                .filter(|d| (0.0..=3600.0).contains(d))
                        })
                        .map(|d| d.map(Duration::from_secs_f64))
                        .collect();
                    let delays = delays.filter(|d| !d.is_empty()).ok_or_else(|| {
                        Error::Config(format!(
                            "--event-retry-delays-seconds {v}: need seconds like 60,120"
                        ))
                    })?;
                    event_settings(&mut c).retry_delays = delays;
                }
                "--event-concurrency" => {
                    let n = count(flag, &value()?, 1)?;
                    event_settings(&mut c).concurrency = n;
                }
                "--event-replicas" => {
                    let v = value()?;
                    let n = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=5).contains(n))
                        .ok_or_else(|| {
                            Error::Config(format!("--event-replicas {v}: need 1 to 5"))
                        })?;
                    event_settings(&mut c).replicas = n;
                }
                "--sidecar-port" => {
                    let v = value()?;
                    c.sidecar_port = v
                        .parse()
                        .map_err(|_| Error::Config(format!("--sidecar-port {v}: not a port")))?;
                }
                other => return Err(Error::Config(format!("unknown flag {other}"))),
            }
        }
        Ok(c)
    }
}

/// The event settings being parsed (the URL may come later, or from LMI_NATS_URL).
fn event_settings(c: &mut Config) -> &mut events::EventSettings {
    c.events
        .get_or_insert_with(|| events::EventSettings::new(String::new()))
}

/// A whole number of at least `min` (and at most a million) for `flag`.
fn count(flag: &str, v: &str, min: usize) -> Result<usize, Error> {
    v.parse()
        .ok()
        .filter(|n| (min..=1_000_000).contains(n))
        .ok_or_else(|| Error::Config(format!("{flag} {v}: need {min} to 1000000")))
}

/// The audience in-cluster callers request their projected service-account tokens for.
pub const DEFAULT_TOKEN_AUDIENCE: &str = "lmi-router";

/// Connections one router opens to one EE at once, by default: the sidecar's default concurrency
/// is 8, and a few spare ones let refusals come back while others run.
pub const DEFAULT_EE_CONNECTIONS: usize = 16;

/// How long an invocation may wait for a free connection to an EE whose pool is in use, before it
/// counts that EE as full (and tries another).
const POOL_WAIT: Duration = Duration::from_millis(250);

/// The answer to a connection over `--max-connections`: a Lambda throttle, written without
/// reading the request, and the connection closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: application/json\r\n\
x-amzn-errortype: TooManyRequestsException\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 90\r\n\r\n\
{\"Type\":\"User\",\"message\":\"Rate Exceeded.\",\"Reason\":\"Concurrency\",\"retryAfterSeconds\":\"1\"}\n";

pub struct Router {
    pub config: Config,
    catalog: RwLock<Arc<Catalog>>,
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub metrics: metrics::Metrics,
    /// Bytes of request payload the router may hold at once (one permit per byte), so a flood of
    /// large requests cannot exhaust memory.
    pub payload_budget: Arc<tokio::sync::Semaphore>,
    /// Invocations in progress (one permit each).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Caller authentication and authorization; `None` with `--auth off`.
    pub access: Option<access::Access>,
    /// The event queue; `None` without `--nats-url`.
    pub events: Option<events::EventQueue>,
    /// The cluster's invoke key, from which each function's token is derived when the catalog is
    /// built (None until it is known: invocations then go without a token).
    invoke_key: RwLock<Option<InvokeKey>>,
}

/// How long an invocation waits for a connection to a busy EE (see [`POOL_WAIT`]).
pub fn pool_wait() -> Duration {
    POOL_WAIT
}

/// How long an idle pooled connection to a sidecar is kept: shorter than the sidecar's own idle
/// timeout, so the router never sends on a connection the sidecar is closing.
const POOL_IDLE: Duration = Duration::from_secs(20);

impl Router {
    pub fn new(config: Config) -> Result<Router, Error> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(config.ee_connections)
            // An answer streams through in pieces of at most this size (see `memory`).
            .http1_max_buf_size(memory::ANSWER_BUFFER_BYTES)
            .build(connector);
        let budget = config.payload_budget_mib * 1024 * 1024;
        Ok(Router {
            payload_budget: Arc::new(tokio::sync::Semaphore::new(budget)),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
            config,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            invoke_key: RwLock::new(None),
            client,
            metrics: metrics::Metrics::new()?,
            access: None,
            events: None,
        })
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The invoke key, if known.
    pub fn invoke_key(&self) -> Option<InvokeKey> {
        match self.invoke_key.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Set (or clear) the invoke key; whether it changed. The next [`Router::install`] derives
    /// the functions' tokens from it.
    pub fn set_invoke_key(&self, key: Option<InvokeKey>) -> bool {
        let mut current = match self.invoke_key.write() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        let changed = *current != key;
        *current = key;
        changed
    }

    /// Replace the catalog (keeping EE in-flight counts).
    pub fn install(&self, spec: &CatalogSpec) -> Result<(), String> {
        let next = Arc::new(Catalog::build(
            spec,
            &self.catalog(),
            self.config.ee_connections,
            self.invoke_key().as_ref(),
        )?);
        self.metrics.functions.set(next.function_count() as i64);
        self.metrics
            .execution_environments
            .set(next.endpoint_count() as i64);
        match self.catalog.write() {
            Ok(mut c) => *c = next,
            Err(p) => *p.into_inner() = next,
        }
        Ok(())
    }
}

/// A router serving the Invoke API.
pub struct Started {
    /// Where it listens (the port is the OS's pick when the configured one is 0).
    pub addr: SocketAddr,
    pub router: Arc<Router>,
    /// The accept loop; abort it to stop serving.
    pub server: tokio::task::JoinHandle<()>,
}

/// Loads the catalog (from the static file, else from the cluster of `client`, else of the
/// in-cluster config or KUBECONFIG) and starts serving. Returns once the catalog is complete, so
/// the router never answers 404 for a function it has not seen yet.
pub async fn start(config: Config, client: Option<kube::Client>) -> Result<Started, Error> {
    let mut router = Router::new(config)?;
    // The cluster holds the catalog (without a static file), the invoke key (without a key
    // file), and the access keys and reviews (with auth).
    let client = if router.config.static_file.is_none() || router.config.auth {
        Some(match client {
            Some(client) => client,
            None => kube::Client::try_default()
                .await
                .map_err(|e| Error::Kube(e.to_string()))?,
        })
    } else {
        None
    };
    match (&client, router.config.auth) {
        (Some(client), true) => {
            let config = access::AccessConfig {
                key_namespace: router.config.system_namespace.clone(),
                token_audience: router.config.token_audience.clone(),
                regions: router.config.allowed_regions.clone(),
            };
            let requests = router.metrics.apiserver_requests.clone();
            router.access = Some(access::Access::start(client.clone(), &config, requests).await?);
        }
        _ => tracing::warn!(
            "authentication is off (--auth off): every caller that reaches the router may invoke every function"
        ),
    }
    if let Some(settings) = router.config.events.clone() {
        if settings.url.is_empty() {
            return Err(Error::Config(
                "the --event-* flags need --nats-url (or LMI_NATS_URL)".to_string(),
            ));
        }
        router.events = Some(events::EventQueue::connect(settings).await?);
    }
    let router = Arc::new(router);
    if let Some(queue) = router.events.clone() {
        tokio::spawn(events::dispatch::run(router.clone(), queue));
    }
    let key_from_file = match &router.config.invoke_key_file {
        Some(path) => {
            router.set_invoke_key(Some(read_invoke_key(path)?));
            true
        }
        None => false,
    };
    match (router.config.static_file.clone(), client) {
        (Some(path), _) => static_file::watch(router.clone(), path).await?,
        (None, Some(client)) => cluster::watch(router.clone(), client, !key_from_file).await?,
        (None, None) => return Err(Error::Config("no catalog source".to_string())),
    }
    let listener = http_server::bind(router.config.listen_addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, "router started");
    let r = router.clone();
    let server = tokio::spawn(http_server::serve(
        listener,
        Some(Duration::from_secs(30)),
        http_server::capped_gate(r.config.max_connections, TOO_MANY_CONNECTIONS),
        move |req| api::handle(r.clone(), req),
    ));
    if let Some(url_addr) = router.config.url_listen {
        let listener = http_server::bind(url_addr).await?;
        tracing::info!(listen = %listener.local_addr()?, domain = %router.config.url_domain, "function URLs served");
        let r = router.clone();
        tokio::spawn(http_server::serve(
            listener,
            Some(Duration::from_secs(30)),
            http_server::capped_gate(r.config.max_connections, TOO_MANY_CONNECTIONS),
            move |req| crate::url::serve::handle(r.clone(), req),
        ));
    }
    Ok(Started {
        addr,
        router,
        server,
    })
}

/// The invoke key in `path`: its bytes as they are (what the Secret's `key` field holds).
fn read_invoke_key(path: &std::path::Path) -> Result<InvokeKey, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    InvokeKey::new(bytes).ok_or_else(|| Error::ParseFile {
        path: path.display().to_string(),
        message: "the invoke key file is empty".to_string(),
    })
}

/// Run until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), Error> {
    let started = start(config, None).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    started.server.abort();
    tracing::info!("router stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_throttle_is_a_complete_lambda_429() {
        assert!(http_server::is_complete_json_response(TOO_MANY_CONNECTIONS));
        let text = String::from_utf8_lossy(TOO_MANY_CONNECTIONS);
        assert!(text.starts_with("HTTP/1.1 429 "));
        assert!(text.contains("x-amzn-errortype: TooManyRequestsException\r\n"));
        assert!(text.contains("\"Reason\":\"Concurrency\""));
    }

    #[test]
    fn flags_and_the_memory_limit() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = |_: &str| None;
        let c =
            Config::from_args_and_env(&args(&["--max-connections", "10"]), none).expect("config");
        assert_eq!(c.max_connections, 10);
        assert!(Config::from_args(&args(&["--max-in-flight", "0"])).is_err());
        let limit = |k: &str| (k == "LMI_MEMORY_LIMIT_MIB").then(|| "512".to_string());
        let c = Config::from_args_and_env(&[], limit).expect("config");
        assert_eq!(c.payload_budget_mib, 169);
        // An explicit budget wins over the limit.
        let c = Config::from_args_and_env(&args(&["--payload-budget-mib", "64"]), limit)
            .expect("config");
        assert_eq!(c.payload_budget_mib, 64);
        let tiny = |k: &str| (k == "LMI_MEMORY_LIMIT_MIB").then(|| "128".to_string());
        assert!(Config::from_args_and_env(&[], tiny).is_err());
    }

    #[test]
    fn the_system_namespace_is_the_flag_else_the_pods_else_lmi_system() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = |_: &str| None;
        let pod = |k: &str| (k == "POD_NAMESPACE").then(|| "lmi".to_string());
        let c = Config::from_args_and_env(&[], none).expect("config");
        assert_eq!(c.system_namespace, "lmi-system");
        let c = Config::from_args_and_env(&[], pod).expect("config");
        assert_eq!(c.system_namespace, "lmi");
        let c =
            Config::from_args_and_env(&args(&["--system-namespace", "ops"]), pod).expect("config");
        assert_eq!(c.system_namespace, "ops");
        let c = Config::from_args(&args(&["--invoke-key-file", "/k"])).expect("config");
        assert_eq!(c.invoke_key_file, Some(PathBuf::from("/k")));
    }
}
