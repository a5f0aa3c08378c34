//! Sidecar settings, from the environment (the operator sets them on the pod; the downward API
//! supplies the function container's limits).

use std::net::SocketAddr;
use std::time::Duration;

use lmi_crds::ee_contract::{self, env as ee_env};

use super::access::Token;
use super::memory;
use crate::Error;
use crate::admission::Thresholds;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the runtime reaches the Runtime API (`AWS_LAMBDA_RUNTIME_API`). Loopback only: the
    /// function container shares the pod's network namespace.
    pub runtime_api_addr: SocketAddr,
    /// Where the router sends invocations, and where metrics, readiness and utilization are served.
    pub listen_addr: SocketAddr,
    pub max_concurrency: usize,
    pub function_timeout: Duration,
    pub init_timeout: Duration,
    /// CPU limit of the function container in cores; `None` = unknown (no CPU admission check).
    pub cpu_limit_cores: Option<f64>,
    /// Memory limit of the function container; `None` = unknown (no memory admission check).
    pub memory_limit_bytes: Option<u64>,
    pub thresholds: Thresholds,
    pub sample_interval: Duration,
    /// Used for `Lambda-Runtime-Invoked-Function-Arn` when the router did not send one.
    pub default_function_arn: String,
    /// Invocation payload bytes held at once (`LMI_REQUEST_BUDGET_MIB`).
    pub request_budget_bytes: usize,
    /// Runtime answer bytes held at once (`LMI_RESPONSE_BUDGET_MIB`).
    pub response_budget_bytes: usize,
    /// Router-facing connections open at once (`LMI_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// The function's invoke token (`LMI_INVOKE_TOKEN`): required on `POST /invoke` when set.
    pub invoke_token: Option<Token>,
    /// This pod's drain token (`LMI_DRAIN_TOKEN`): required on `GET /drain` when set.
    pub drain_token: Option<Token>,
    /// Lambda's limits on a streamed answer (`LMI_STREAM_*`; tests shorten them).
    pub stream_limits: super::stream::Limits,
}

/// Read settings through `get` (so tests need not touch the process environment).
pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
    let parse_addr = |key: &str, default: &str| -> Result<SocketAddr, Error> {
        let v = get(key).unwrap_or_else(|| default.to_string());
        v.parse()
            .map_err(|_| Error::Config(format!("{key}={v} is not an address (host:port)")))
    };
    let parse_num = |key: &str| -> Result<Option<f64>, Error> {
        get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| Error::Config(format!("{key}={v} is not a non-negative number")))
            })
            .transpose()
    };
    let max_concurrency = parse_num(ee_env::MAX_CONCURRENCY)?.unwrap_or(8.0) as usize;
    if !(1..=1600).contains(&max_concurrency) {
        return Err(Error::Config(format!(
            "{} must be 1 to 1600",
            ee_env::MAX_CONCURRENCY
        )));
    }
    let timeout_s = parse_num(ee_env::FUNCTION_TIMEOUT_SECONDS)?.unwrap_or(3.0);
    if !(0.001..=900.0).contains(&timeout_s) {
        return Err(Error::Config(format!(
            "{} must be at most 900",
            ee_env::FUNCTION_TIMEOUT_SECONDS
        )));
    }
    let function_timeout = Duration::from_secs_f64(timeout_s);
    // Lambda: init timeout is max(130 s, function timeout). Overridable for tests.
    let init_timeout = match parse_num(ee_env::INIT_TIMEOUT_SECONDS)? {
        Some(s) => Duration::from_secs_f64(s),
        None => function_timeout.max(Duration::from_secs(130)),
    };
    let cpu_limit_cores = parse_num(ee_env::CPU_LIMIT_MILLICORES)?
        .filter(|m| *m > 0.0)
        .map(|m| m / 1000.0);
    let memory_limit_bytes = match parse_num(ee_env::MEMORY_LIMIT_BYTES)?.filter(|b| *b > 0.0) {
        Some(b) => Some(b as u64),
        None => parse_num(ee_env::FUNCTION_MEMORY_SIZE)?
            .filter(|m| *m > 0.0)
            .map(|mib| (mib * 1024.0 * 1024.0) as u64),
    };
    let defaults = Thresholds::default();
    let thresholds = Thresholds {
        cpu: parse_num("LMI_CPU_PRESSURE")?.unwrap_or(defaults.cpu),
        memory: parse_num("LMI_MEMORY_PRESSURE")?.unwrap_or(defaults.memory),
    };
    let sample_ms = parse_num("LMI_SAMPLE_INTERVAL_MS")?
        .unwrap_or(1000.0)
        .max(10.0);
    let mib = |key: &str, default: u64| -> Result<usize, Error> {
        let v = parse_num(key)?.unwrap_or(default as f64);
        // At least one payload of the largest size must fit.
        if !(6.0..=4096.0).contains(&v) {
            return Err(Error::Config(format!("{key} must be 6 to 4096 (MiB)")));
        }
        Ok((v * 1024.0 * 1024.0) as usize)
    };
    let request_budget_bytes = mib("LMI_REQUEST_BUDGET_MIB", memory::DEFAULT_REQUEST_BUDGET_MIB)?;
    let response_budget_bytes = mib(
        "LMI_RESPONSE_BUDGET_MIB",
        memory::DEFAULT_RESPONSE_BUDGET_MIB,
    )?;
    let max_connections =
        parse_num("LMI_MAX_CONNECTIONS")?.map_or(memory::DEFAULT_MAX_CONNECTIONS, |n| n as usize);
    if !(1..=100_000).contains(&max_connections) {
        return Err(Error::Config(
            "LMI_MAX_CONNECTIONS must be 1 to 100000".to_string(),
        ));
    }
    // Set but empty is a mistake, not "no token": refuse to start rather than run unprotected.
    let token = |key: &str| -> Result<Option<Token>, Error> {
        match get(key) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(Error::Config(format!("{key} is set but empty"))),
            Some(v) => Ok(Some(Token::new(v))),
        }
    };
    let stream_defaults = super::stream::Limits::default();
    let stream_mib = |key: &str, default: u64| -> Result<u64, Error> {
        Ok(parse_num(key)?.map_or(default, |v| (v * 1024.0 * 1024.0) as u64))
    };
    let stream_limits = super::stream::Limits {
        max_bytes: stream_mib("LMI_STREAM_MAX_MIB", stream_defaults.max_bytes)?,
        uncapped_bytes: stream_mib("LMI_STREAM_UNCAPPED_MIB", stream_defaults.uncapped_bytes)?,
        capped_bytes_per_second: stream_mib(
            "LMI_STREAM_CAPPED_MIB_PER_SECOND",
            stream_defaults.capped_bytes_per_second,
        )?,
    };
    let invoke_token = token(lmi_crds::invoke_token::INVOKE_TOKEN_ENV)?;
    let drain_token = token(lmi_crds::invoke_token::DRAIN_TOKEN_ENV)?;
    let name = get(ee_env::FUNCTION_NAME).unwrap_or_else(|| "function".to_string());
    let region = get("AWS_REGION").unwrap_or_else(|| "us-east-1".to_string());
    let namespace = get(ee_env::NAMESPACE).unwrap_or_else(|| "default".to_string());
    Ok(Config {
        runtime_api_addr: parse_addr(ee_env::RUNTIME_API_ADDR, ee_contract::RUNTIME_API_ADDR)?,
        listen_addr: parse_addr(
            ee_env::LISTEN_ADDR,
            &format!("0.0.0.0:{}", ee_contract::SIDECAR_PORT),
        )?,
        max_concurrency,
        function_timeout,
        init_timeout,
        cpu_limit_cores,
        memory_limit_bytes,
        thresholds,
        sample_interval: Duration::from_millis(sample_ms as u64),
        default_function_arn: format!("arn:aws:lambda:{region}:{namespace}:function:{name}"),
        request_budget_bytes,
        response_budget_bytes,
        max_connections,
        invoke_token,
        drain_token,
        stream_limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).expect("config");
        assert_eq!(c.max_concurrency, 8);
        assert_eq!(c.function_timeout, Duration::from_secs(3));
        assert_eq!(c.init_timeout, Duration::from_secs(130));
        assert_eq!(c.cpu_limit_cores, None);
        assert_eq!(c.runtime_api_addr.to_string(), "127.0.0.1:9001");
        assert_eq!((c.invoke_token, c.drain_token), (None, None));
    }

    #[test]
    fn tokens_from_the_environment_and_an_empty_one_is_an_error() {
        let c = cfg(&[("LMI_INVOKE_TOKEN", "abc"), ("LMI_DRAIN_TOKEN", "def")]).expect("config");
        assert_eq!(c.invoke_token, Some(Token::new("abc".into())));
        assert_eq!(c.drain_token, Some(Token::new("def".into())));
        assert!(!format!("{c:?}").contains("abc"), "tokens are not printed");
        assert!(cfg(&[("LMI_INVOKE_TOKEN", "")]).is_err());
        assert!(cfg(&[("LMI_DRAIN_TOKEN", " ")]).is_err());
    }

    #[test]
    fn limits_from_downward_api_and_init_timeout_rule() {
        let c = cfg(&[
            ("LMI_CPU_LIMIT_MILLICORES", "2000"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048"),
            ("LMI_FUNCTION_TIMEOUT_SECONDS", "300"),
        ])
        .expect("config");
        assert_eq!(c.cpu_limit_cores, Some(2.0));
        assert_eq!(c.memory_limit_bytes, Some(2048 * 1024 * 1024));
        assert_eq!(c.init_timeout, Duration::from_secs(300));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(cfg(&[("AWS_LAMBDA_MAX_CONCURRENCY", "0")]).is_err());
        assert!(cfg(&[("AWS_LAMBDA_MAX_CONCURRENCY", "x")]).is_err());
        assert!(cfg(&[("LMI_FUNCTION_TIMEOUT_SECONDS", "901")]).is_err());
        assert!(cfg(&[("LMI_LISTEN_ADDR", "nope")]).is_err());
    }
}
