//! Where the autoscaler's numbers come from: each EE's sidecar serves `/utilization` (JSON) on
//! its pod address. The source is a trait so tests on kwok nodes (whose pods run nothing) can
//! supply their own numbers; the operator binary uses [`HttpSource`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use lmi_crds::ee_contract::{SIDECAR_PORT, UTILIZATION_PATH};

use crate::autoscale::Observation;

/// One EE's numbers, as its sidecar reports them (the contract both sides share).
pub use lmi_crds::ee_contract::UtilizationSample as Sample;

pub type SampleFuture<'a> = Pin<Box<dyn Future<Output = Option<Sample>> + Send + 'a>>;

/// Reads one EE's utilization; None when it cannot be read now.
pub trait UtilizationSource: Send + Sync {
    fn sample<'a>(&'a self, pod: &'a Pod) -> SampleFuture<'a>;
}

/// Asks the sidecar at `http://<pod IP>:9000/utilization`, with a short timeout.
pub struct HttpSource {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl HttpSource {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self {
            // No idle connections kept: each EE is another host, sampled every few seconds, so
            // a pool would hold one idle connection (and its buffers) per EE of the cluster.
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector),
            timeout,
        }
    }
}

impl UtilizationSource for HttpSource {
    fn sample<'a>(&'a self, pod: &'a Pod) -> SampleFuture<'a> {
        Box::pin(async move {
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            let uri = format!("http://{ip}:{SIDECAR_PORT}{UTILIZATION_PATH}")
                .parse()
                .ok()?;
            let response = tokio::time::timeout(self.timeout, self.client.get(uri))
                .await
                .ok()?
                .ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body = tokio::time::timeout(self.timeout, response.into_body().collect())
                .await
                .ok()?
                .ok()?;
            match serde_json::from_slice(&body.to_bytes()) {
                Ok(sample) => Some(sample),
                Err(e) => {
                    tracing::debug!(pod = %pod.name_any(), error = %e, "unreadable utilization");
                    None
                }
            }
        })
    }
}

/// Counters of one EE at the previous sample, to turn totals into rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub invocations: u64,
    pub refusals: u64,
}

/// A version's observation from its EEs' samples: CPU and saturation averaged over the Ready EEs
/// that answered; the share of refused invocations since the previous samples.
pub fn observe_version(
    live_ees: u32,
    samples: &[(String, Sample)],
    previous: &BTreeMap<String, Counters>,
) -> Observation {
    let ready: Vec<&Sample> = samples.iter().map(|(_, s)| s).filter(|s| s.ready).collect();
    let n = ready.len();
    if n == 0 {
        return Observation {
            ready_ees: 0,
            live_ees,
            ..Default::default()
        };
    }
    let count = n as f64;
    let cpu_percent = ready.iter().map(|s| s.cpu_utilization * 100.0).sum::<f64>() / count;
    let saturation = ready
        .iter()
        .map(|s| {
            if s.max_concurrency == 0 {
                0.0
            } else {
                s.in_flight as f64 / s.max_concurrency as f64
            }
        })
        .sum::<f64>()
        / count;
    let (mut served, mut refused) = (0u64, 0u64);
    for (pod, s) in samples {
        let before = previous.get(pod).copied().unwrap_or_default();
        served += s.invocations.saturating_sub(before.invocations);
        refused += s.refusals.saturating_sub(before.refusals);
    }
    let throttled_share = if served + refused == 0 {
        0.0
    } else {
        refused as f64 / (served + refused) as f64
    };
    Observation {
        ready_ees: u32::try_from(n).unwrap_or(u32::MAX),
        live_ees,
        cpu_percent,
        saturation,
        throttled_share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ready: bool, cpu: f64, in_flight: u64, invocations: u64, refusals: u64) -> Sample {
        Sample {
            ready,
            cpu_utilization: cpu,
            in_flight,
            max_concurrency: 8,
            invocations,
            refusals,
            ..Default::default()
        }
    }

    #[test]
    fn averages_the_ready_ees_and_rates_the_counters() {
        let samples = vec![
            ("a".to_string(), sample(true, 0.8, 8, 110, 10)),
            ("b".to_string(), sample(true, 0.4, 4, 50, 0)),
            ("c".to_string(), sample(false, 0.0, 0, 0, 0)),
        ];
        let previous = BTreeMap::from([(
            "a".to_string(),
            Counters {
                invocations: 100,
                refusals: 0,
            },
        )]);
        let obs = observe_version(3, &samples, &previous);
        assert_eq!((obs.ready_ees, obs.live_ees), (2, 3));
        assert!((obs.cpu_percent - 60.0).abs() < 1e-9);
        assert!((obs.saturation - 0.75).abs() < 1e-9);
        // 10 + 50 served, 10 refused since the previous samples.
        assert!((obs.throttled_share - 10.0 / 70.0).abs() < 1e-9);
    }

    #[test]
    fn no_ready_ee_is_no_signal() {
        let obs = observe_version(
            2,
            &[("a".to_string(), sample(false, 0.9, 0, 0, 0))],
            &BTreeMap::new(),
        );
        assert_eq!(obs.ready_ees, 0);
    }

    #[test]
    fn the_sidecars_json_parses() {
        let json = r#"{"inFlight":3,"maxConcurrency":8,"cpuUtilization":0.5,"cpuCores":0.5,"memoryUtilization":0.2,"ready":true,"draining":false,"invocations":42}"#;
        let s: Sample = serde_json::from_str(json).unwrap();
        assert_eq!(
            (s.in_flight, s.max_concurrency, s.invocations, s.refusals),
            (3, 8, 42, 0)
        );
        assert!(s.ready);
    }
}
