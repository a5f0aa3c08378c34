//! `bench SECONDS auth`: the router's cost of authentication. Two routers in front of one
//! sidecar, one with `--auth off` and one with `--auth on` (SigV4 against an access-key Secret,
//! RBAC through SubjectAccessReviews on the cluster of KUBECONFIG, e.g. `lmi-dev`'s), each driven
//! at 1000 invocations/s in turn for SECONDS. Every request to the second is signed at its own
//! time, as an SDK signs. Prints the router's CPU per 1k/s, p50/p99 and what auth adds, and the
//! reviews the authenticating router asked of the apiserver in its run.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::Api;
use kube::api::{Patch, PatchParams};
use lmi_crds::access::{ACCESS_KEY_SECRET_TYPE, INVOKER_CLUSTER_ROLE, invoker_cluster_role};
use lmi_router::auth::{amz_date, body_sha256, canonical, signing};
use serde_json::json;

use super::*;

const NAMESPACE: &str = "lmi-auth-bench";
const USER: &str = "lmi-auth-bench";
const RATE: u64 = 1000;

/// Signs requests with SigV4 as the AWS SDKs do (header form, `host` and `x-amz-date` signed).
pub struct Signer {
    pub key_id: String,
    pub secret: String,
    pub host: String,
}

impl Signer {
    /// The headers that make a POST of `payload` to `path` a signed request, now.
    pub fn headers(&self, path: &str, payload: &[u8]) -> Vec<(&'static str, String)> {
        let now = amz_date::unix_seconds(SystemTime::now());
        let date_time = amz_date::format(now);
        let scope = lmi_router::auth::authorization::Scope {
            date: date_time.get(..8).unwrap_or_default().to_string(),
            region: "us-east-1".to_string(),
            service: lmi_router::auth::SERVICE.to_string(),
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in [("host", &self.host), ("x-amz-date", &date_time)] {
            if let Ok(v) = http::HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        }
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        let canonical = canonical::canonical_request(
            "POST",
            path,
            "",
            &headers,
            &signed,
            &body_sha256(payload),
        )
        .unwrap_or_default();
        let string_to_sign = canonical::string_to_sign(&date_time, &scope, &canonical);
        let key = signing::signing_key(&self.secret, &scope.date, &scope.region, &scope.service);
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders=host;x-amz-date, Signature={}",
            self.key_id,
            scope.to_scope_string(),
            signing::sign(&key, &string_to_sign)
        );
        vec![
            ("host", self.host.clone()),
            ("x-amz-date", date_time),
            ("authorization", authorization),
        ]
    }
}

/// The key, its RoleBinding and the namespace they live in, applied to the cluster.
async fn prepare_cluster(key_id: &str, secret: &str) -> Result<(), kube::Error> {
    let client = kube::Client::try_default().await?;
    let apply = PatchParams::apply("lmi-bench").force();
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))
        .map_err(kube::Error::SerdeError)?;
    Api::<Namespace>::all(client.clone())
        .patch(NAMESPACE, &apply, &Patch::Apply(namespace))
        .await?;
    Api::<ClusterRole>::all(client.clone())
        .patch(
            INVOKER_CLUSTER_ROLE,
            &apply,
            &Patch::Apply(invoker_cluster_role()),
        )
        .await?;
    let key = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("bench-key".to_string()),
            ..Default::default()
        },
        type_: Some(ACCESS_KEY_SECRET_TYPE.to_string()),
        data: Some(BTreeMap::from([
            (
                "accessKeyId".to_string(),
                ByteString(key_id.as_bytes().to_vec()),
            ),
            (
                "secretAccessKey".to_string(),
                ByteString(secret.as_bytes().to_vec()),
            ),
            ("user".to_string(), ByteString(USER.as_bytes().to_vec())),
        ])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .patch("bench-key", &apply, &Patch::Apply(key))
        .await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "bench-invoker", "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": INVOKER_CLUSTER_ROLE},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": USER}]
    }))
    .map_err(kube::Error::SerdeError)?;
    Api::<RoleBinding>::namespaced(client, NAMESPACE)
        .patch("bench-invoker", &apply, &Patch::Apply(binding))
        .await?;
    Ok(())
}

/// Sum of `lmi_router_apiserver_requests_total` in a router's /metrics.
async fn apiserver_requests(client: &HttpClient, port: u16) -> f64 {
    let Ok(uri) = format!("http://127.0.0.1:{port}/metrics").parse::<hyper::Uri>() else {
        return f64::NAN;
    };
    let Ok(response) = client.get(uri).await else {
        return f64::NAN;
    };
    let Ok(body) = response.into_body().collect().await else {
        return f64::NAN;
    };
    String::from_utf8_lossy(&body.to_bytes())
        .lines()
        .filter(|l| l.starts_with("lmi_router_apiserver_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn compare(secs: f64, bins: &Path, examples: &Path) {
    let key_id = format!("LMIBENCH{}", std::process::id());
    let secret = format!("{:x}", lmi_router::ids::random_u64());
    if let Err(e) = prepare_cluster(&key_id, &secret).await {
        eprintln!("cannot prepare the cluster of KUBECONFIG (start one with lmi-dev up): {e}");
        std::process::exit(2);
    }
    let (sidecar_port, rapi_port) = (free_port(), free_port());
    let _sidecar = start_sidecar(bins, examples, sidecar_port, rapi_port);
    let catalog = write_catalog("auth", NAMESPACE, sidecar_port);
    let client = http_client();
    println!(
        "| router | achieved/s | errors | p50 µs | p99 µs | router vCPU | router vCPU per 1k/s | apiserver reviews |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for auth in ["off", "on"] {
        let port = free_port();
        let router = start_router(
            bins,
            &catalog,
            port,
            auth,
            &[
                "--system-namespace",
                NAMESPACE,
                "--default-namespace",
                NAMESPACE,
            ],
        );
        let signer = (auth == "on").then(|| {
            Arc::new(Signer {
                key_id: key_id.clone(),
                secret: secret.clone(),
                host: format!("127.0.0.1:{port}"),
            })
        });
        let uri: hyper::Uri =
            format!("http://127.0.0.1:{port}/2015-03-31/functions/bench/invocations")
                .parse()
                .unwrap_or_default();
        wait_up(&client, &uri, signer.as_deref()).await;
        // Warm up the pools (and, with auth, the decision cache: the run counts what follows).
        let _ = open_loop(&client, &uri, RATE, 1.0, signer.clone()).await;
        let reviews_before = apiserver_requests(&client, port).await;
        let cpu_before = cpu_seconds(router.0.id());
        let run = open_loop(&client, &uri, RATE, secs, signer).await.sorted();
        let cpu = (cpu_seconds(router.0.id()) - cpu_before) / run.seconds;
        let reviews = apiserver_requests(&client, port).await - reviews_before;
        for e in &run.error_samples {
            eprintln!("auth {auth}: error: {e}");
        }
        let rate = run.ok as f64 / run.seconds;
        println!(
            "| auth {auth} | {rate:.0} | {} | {:.0} | {:.0} | {cpu:.3} | {:.3} | {} |",
            run.errors,
            run.pct(0.5),
            run.pct(0.99),
            cpu / (rate / 1000.0),
            if auth == "on" {
                format!("{reviews:.0} in {:.0} s", run.seconds)
            } else {
                "-".to_string()
            },
        );
        rows.push((run, cpu / (rate / 1000.0)));
    }
    if let [(off, off_cpu), (on, on_cpu)] = rows.as_slice() {
        println!(
            "\nauth on adds: p50 {:.0} µs, p99 {:.0} µs, CPU per 1k/s {:+.1}%",
            on.pct(0.5) - off.pct(0.5),
            on.pct(0.99) - off.pct(0.99),
            (on_cpu / off_cpu - 1.0) * 100.0
        );
    }
    let _ = std::fs::remove_file(&catalog);
}
