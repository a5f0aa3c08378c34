//! The Helm chart (`charts/lmi`): its CRDs are the generated ones, its alerts pass promtool's checks
//! and unit tests, `helm lint` and `helm template` pass with the default values and with
//! `ci/full-values.yaml`, the rendered manifests pass a
//! server-side dry run on the test cluster (Pod Security "restricted" enforced on the pods the
//! Deployments would create), the docs generated from the chart's inputs are current, and
//! `helm install` on the local cluster's real node runs the operator and the router, through which
//! a function answers.
//!
//! helm and promtool are built from their Go modules on first use (`lmi_e2e::helm`,
//! `lmi_e2e::prometheus`, cached in `$HOME/.cache/lmi/helm-<version>` and `promtool-<version>`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use lmi_crds::Function;
use lmi_e2e::access;
use lmi_e2e::harness::{self, TestEnv};
use lmi_e2e::helm::Helm;
use lmi_e2e::images::PYTHON_FUNCTION_IMAGE;
use lmi_e2e::manifests::{self, ApplyOptions};
use lmi_e2e::node::TEST_CAPACITY_PROVIDER;
use lmi_e2e::operator_harness;
use lmi_e2e::paths::Paths;
use lmi_e2e::{Error, Result};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

static HELM: OnceCell<Helm> = OnceCell::const_new();

async fn helm() -> Result<&'static Helm> {
    HELM.get_or_try_init(|| async { Helm::ensure_built(&Paths::from_env()).await })
        .await
}

fn chart_dir() -> PathBuf {
    harness::repo_root().join("charts/lmi")
}

fn full_values() -> PathBuf {
    chart_dir().join("ci/full-values.yaml")
}

fn local_values() -> PathBuf {
    chart_dir().join("ci/local-values.yaml")
}

/// The value sets every check runs with: the defaults, every value set, and the local node's.
fn value_sets() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("default values", vec![]),
        (
            "ci/full-values.yaml",
            vec!["--values".into(), full_values().display().to_string()],
        ),
        (
            "ci/local-values.yaml",
            vec!["--values".into(), local_values().display().to_string()],
        ),
    ]
}

async fn template(namespace: &str, extra: &[String], include_crds: bool) -> Result<Vec<Value>> {
    let chart = chart_dir().display().to_string();
    let mut args: Vec<&str> = vec!["template", "lmi", &chart, "--namespace", namespace];
    if include_crds {
        args.push("--include-crds");
    }
    args.extend(extra.iter().map(String::as_str));
    let rendered = helm().await?.run(&args).await?;
    manifests::parse_documents(&rendered).map_err(|source| Error::Yaml {
        path: PathBuf::from("helm template output"),
        source,
    })
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let root = harness::repo_root();
    let listing = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        manifests::yaml_files(dir)
            .unwrap()
            .into_iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect()
    };
    let mut generated = listing(&root.join("crds/yaml"));
    // The admission policies and the ClusterRoles go to the chart's templates, not its crds/
    // (lmi-crds' drift test checks both copies).
    generated.remove(lmi_crds::crdgen::ADMISSION_FILE);
    generated.remove(lmi_crds::crdgen::INVOKER_ROLE_FILE);
    generated.remove(lmi_crds::crdgen::APP_TEAM_ROLES_FILE);
    let chart = listing(&root.join("charts/lmi/crds"));
    assert!(!generated.is_empty(), "crds/yaml holds no CRDs");
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        chart.keys().collect::<Vec<_>>(),
        "charts/lmi/crds must hold exactly the files of crds/yaml: run `cargo run -p lmi-crds --bin lmi-crdgen`"
    );
    for (file, bytes) in &generated {
        assert!(
            chart[file] == *bytes,
            "charts/lmi/crds/{file} differs from crds/yaml/{file}: run `cargo run -p lmi-crds --bin lmi-crdgen`"
        );
    }
}

#[tokio::test]
async fn helm_lint_passes_with_default_and_full_values() -> Result<()> {
    let helm = helm().await?;
    let chart = chart_dir().display().to_string();
    for (what, extra) in value_sets() {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        args.extend(extra.iter().map(String::as_str));
        let out = helm.run(&args).await?;
        assert!(
            out.contains("0 chart(s) failed"),
            "helm lint ({what}):\n{out}"
        );
    }
    // The schema refuses what the chart cannot honour.
    let bad = helm
        .run(&["lint", "--strict", &chart, "--set", "operator.replicas=0"])
        .await;
    assert!(bad.is_err(), "operator.replicas=0 passed the values schema");
    let bad = helm
        .run(&[
            "template",
            "lmi",
            &chart,
            "--set",
            "operator.leaderElection.enabled=false",
        ])
        .await
        .expect_err("two operator replicas without leader election rendered");
    assert!(
        bad.to_string().contains("needs operator.replicas=1"),
        "{bad}"
    );
    Ok(())
}

#[tokio::test]
async fn helm_template_renders_the_whole_install() -> Result<()> {
    for (what, extra) in value_sets() {
        let docs = template("lmi-system", &extra, false).await?;
        let kinds: BTreeSet<&str> = docs.iter().map(kind).collect();
        for expected in [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "NetworkPolicy",
        ] {
            assert!(kinds.contains(expected), "{what}: no {expected} rendered");
        }
        let deployments: Vec<&Value> = docs.iter().filter(|d| kind(d) == "Deployment").collect();
        assert_eq!(deployments.len(), 2, "{what}: operator and router");
        for deployment in &deployments {
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            for container in pod["containers"].as_array().unwrap() {
                let sc = &container["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
                assert!(container["resources"]["requests"].is_object(), "{what}");
                assert!(container["readinessProbe"].is_object(), "{what}");
                assert!(container["livenessProbe"].is_object(), "{what}");
            }
        }
        let operator = deployments
            .iter()
            .find(|d| name(d).ends_with("-operator"))
            .unwrap();
        let container = &operator["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let flag = |f: &str| {
            args.iter()
                .position(|a| *a == f)
                .and_then(|i| args.get(i + 1))
                .copied()
        };
        assert!(
            flag("--sidecar-image").is_some_and(|i| i.contains("lmi-sidecar:")),
            "{what}: {args:?}"
        );
        assert_eq!(flag("--lease-name"), Some(name(operator)), "{what}");
        assert_eq!(flag("--lease-namespace"), Some("lmi-system"), "{what}");
        for f in [
            "--consolidation-min-age-seconds",
            "--consolidation-settle-seconds",
            "--consolidation-move-timeout-seconds",
        ] {
            assert!(
                flag(f).is_some_and(|v| v.parse::<u64>().is_ok()),
                "{what}: {f} in {args:?}"
            );
        }
        assert!(
            operator["spec"]["replicas"].as_u64().unwrap() >= 2,
            "{what}"
        );
        let env: Vec<&str> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert!(
            env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"),
            "{what}: {env:?}"
        );
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        // The NetworkPolicy admits only the router and the operator to the EEs' port 9000.
        for policy in docs
            .iter()
            .filter(|d| kind(d) == "NetworkPolicy" && !name(d).ends_with("-nats"))
        {
            let spec = &policy["spec"];
            assert_eq!(
                spec["podSelector"]["matchLabels"]["app.kubernetes.io/managed-by"],
                "lmi-operator"
            );
            let rule = &spec["ingress"][0];
            assert_eq!(rule["ports"], json!([{"protocol": "TCP", "port": 9000}]));
            let components: Vec<&str> = rule["from"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|peer| {
                    peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"].as_str()
                })
                .collect();
            assert_eq!(components, ["router", "operator"], "{what}");
        }
    }
    // The optional parts appear only when asked for.
    let defaults = template("lmi-system", &[], false).await?;
    let full = template("lmi-system", &value_sets()[1].1, false).await?;
    for optional in [
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "Ingress",
        "HTTPRoute",
    ] {
        assert!(!defaults.iter().any(|d| kind(d) == optional), "{optional}");
        assert!(full.iter().any(|d| kind(d) == optional), "{optional}");
    }
    let dashboard = |docs: &[Value]| {
        docs.iter()
            .any(|d| kind(d) == "ConfigMap" && name(d).contains("dashboard"))
    };
    assert!(!dashboard(&defaults) && dashboard(&full), "the dashboard");
    nats_is_the_charts_own_unless_one_is_named(&defaults, &full);
    function_urls_reach_the_url_listener(&defaults, &full);
    Ok(())
}

/// The router's URL listener is on the Service's `url` port; the operator shows URLs on the same
/// domain; the Ingress and HTTPRoute send *.<domain> and the extra hosts to that port.
fn function_urls_reach_the_url_listener(defaults: &[Value], full: &[Value]) {
    let template =
        |docs: &[Value]| container_env(docs, "-operator")["LMI_URL_TEMPLATE"]["value"].clone();
    assert_eq!(template(defaults), "http://{id}.lambda-url.localhost/");
    assert_eq!(template(full), "https://{id}.lambda-url.example.com/");
    let service = full
        .iter()
        .find(|d| kind(d) == "Service" && name(d) == "lmi-full-router")
        .expect("the router Service");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "url" && p["port"] == 9443 && p["targetPort"] == "url"),
        "{service}"
    );
    let ingress = full.iter().find(|d| kind(d) == "Ingress").expect("Ingress");
    let hosts: Vec<&str> = ingress["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["host"].as_str())
        .collect();
    assert_eq!(hosts, ["*.lambda-url.example.com", "lmi.example.com"]);
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["name"],
        "url"
    );
    let route = full
        .iter()
        .find(|d| kind(d) == "HTTPRoute")
        .expect("HTTPRoute");
    assert_eq!(
        route["spec"]["hostnames"],
        json!(["*.lambda-url.example.com", "lmi.example.com"])
    );
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["port"], 9443);
}

/// The env entries of the named Deployment's first container, by name.
fn container_env(docs: &[Value], deployment_suffix: &str) -> BTreeMap<String, Value> {
    let deployment = docs
        .iter()
        .find(|d| kind(d) == "Deployment" && name(d).ends_with(deployment_suffix))
        .unwrap_or_else(|| panic!("no Deployment *{deployment_suffix}"));
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e.clone())))
        .collect()
}

/// By default the chart installs one JetStream server (a StatefulSet with a PersistentVolumeClaim,
/// reachable only from the routers and the operator) and points both at it; a NATS named in
/// router.events is used instead, with its credentials and TLS files mounted.
fn nats_is_the_charts_own_unless_one_is_named(defaults: &[Value], full: &[Value]) {
    let nats = defaults
        .iter()
        .find(|d| kind(d) == "StatefulSet" && name(d) == "lmi-nats")
        .expect("the chart's own NATS by default");
    let spec = &nats["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(
        container["readinessProbe"]["httpGet"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/healthz"))
    );
    let config = defaults
        .iter()
        .find(|d| kind(d) == "ConfigMap" && name(d) == "lmi-nats-config")
        .expect("its configuration");
    let text = config["data"]["nats.conf"].as_str().unwrap_or_default();
    assert!(
        text.contains("jetstream") && text.contains("max_payload: 2MB"),
        "{text}"
    );
    let policy = defaults
        .iter()
        .find(|d| kind(d) == "NetworkPolicy" && name(d) == "lmi-nats")
        .expect("who may reach NATS");
    let components: Vec<&str> = policy["spec"]["ingress"][0]["from"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|peer| {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"].as_str()
        })
        .collect();
    assert_eq!(components, ["router", "operator"]);
    for component in ["-router", "-operator"] {
        let env = container_env(defaults, component);
        assert_eq!(
            env["LMI_NATS_URL"]["value"],
            "nats://$(LMI_NATS_SERVICE_HOST):$(LMI_NATS_SERVICE_PORT)",
            "{component}"
        );
    }
    // Full values name a NATS over TLS with credentials: no StatefulSet, the files mounted.
    assert!(!full.iter().any(|d| kind(d) == "StatefulSet"));
    for component in ["-router", "-operator"] {
        let env = container_env(full, component);
        assert_eq!(env["LMI_NATS_URL"]["value"], "tls://nats.nats.svc:4222");
        assert_eq!(
            env["LMI_NATS_CREDENTIALS_FILE"]["value"],
            "/etc/lmi/nats-credentials/router.creds"
        );
        assert_eq!(env["LMI_NATS_CA_FILE"]["value"], "/etc/lmi/nats-ca/ca.crt");
        assert!(
            env.contains_key("LMI_NATS_CLIENT_CERT_FILE")
                && env.contains_key("LMI_NATS_CLIENT_KEY_FILE")
        );
    }
}

#[test]
fn every_rbac_rule_has_a_comment() {
    for file in ["operator-rbac.yaml", "router-rbac.yaml"] {
        let text = std::fs::read_to_string(chart_dir().join("templates").join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut rules = 0;
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("- apiGroups:") {
                rules += 1;
                assert!(
                    i > 0 && lines[i - 1].trim_start().starts_with('#'),
                    "{file}: the rule on line {} has no comment above it",
                    i + 1
                );
            }
        }
        assert!(rules > 0, "{file} has no rules");
    }
}

/// Every metric the Grafana dashboard queries is one the programs export.
#[test]
fn dashboard_queries_exported_metrics() {
    let root = harness::repo_root();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("dashboards/lmi.json")).unwrap(),
    )
    .unwrap();
    let mut exported = BTreeSet::new();
    for dir in ["operator/src", "router/src"] {
        collect_metric_names(&root.join(dir), &mut exported);
    }
    let mut queried = BTreeSet::new();
    let mut stack = vec![&dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(expr) = map.get("expr").and_then(Value::as_str) {
                    queried.extend(metric_names(expr));
                    // Series name their function by function_namespace: a bare `namespace` is
                    // the scrape target's (the operator's or the router's pod), not the
                    // function's.
                    let bare = expr.match_indices("namespace").any(|(i, _)| {
                        !expr[..i].ends_with("function_") && !expr[..i].ends_with('$')
                    });
                    assert!(!bare, "{expr}: select functions by function_namespace");
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    // The alerts' queries too (`up` is Prometheus' own).
    let rules: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("rules/lmi-alerts.yaml")).unwrap(),
    )
    .unwrap();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        queried.extend(metric_names(expr).into_iter().filter(|m| m != "up"));
    }
    assert!(queried.len() > 5, "{queried:?}");
    let missing: Vec<&String> = queried
        .iter()
        .filter(|m| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| m.strip_suffix(s))
                .unwrap_or(m);
            !exported.contains(base)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics nothing exports: {missing:?}"
    );
}

/// The alerts (`rules/lmi-alerts.yaml`, the chart's PrometheusRule) pass promtool's checks and
/// their unit tests (`rules/lmi-alerts.test.yaml`: each fires on what should fire it, with its
/// labels and summary, and not before its `for`).
#[tokio::test]
async fn alerts_pass_promtool_checks_and_unit_tests() -> Result<()> {
    let promtool = lmi_e2e::prometheus::ensure_promtool(&Paths::from_env()).await?;
    let rules = chart_dir().join("rules");
    for args in [
        ["check", "rules", "lmi-alerts.yaml"],
        ["test", "rules", "lmi-alerts.test.yaml"],
    ] {
        let out = lmi_e2e::prometheus::run(&promtool, &rules, &args).await?;
        assert!(
            out.contains("SUCCESS"),
            "promtool {}: {out}",
            args.join(" ")
        );
    }
    Ok(())
}

fn metric_names(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while let Some(start) = text[i..].find("lmi_").map(|s| s + i) {
        let preceded_by_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded_by_word {
            names.push(text[start..end].to_string());
        }
        i = end;
    }
    names
}

fn collect_metric_names(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("listing a source folder") {
        let path = entry.expect("listing a source folder").path();
        if path.is_dir() {
            collect_metric_names(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("reading a source file");
            for quoted in text.split('"').skip(1).step_by(2) {
                if quoted.starts_with("lmi_")
                    && quoted
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    out.insert(quoted.to_string());
                }
            }
        }
    }
}

/// docs/api-reference.md is what scripts/gen-api-reference.py makes of crds/yaml.
#[test]
fn api_reference_is_generated_from_the_crds() {
    let root = harness::repo_root();
    // Debian's python3 has PyYAML (python3-yaml) on every machine of this kind.
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| !p.starts_with('/') || Path::new(p).is_file())
        .unwrap();
    let out = std::process::Command::new(python)
        .arg(root.join("scripts/gen-api-reference.py"))
        .arg("--check")
        .current_dir(&root)
        .output()
        .expect("running scripts/gen-api-reference.py");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CRDs first, then every object, as a server-side dry run (nothing is stored); then the pods the
/// Deployments would create, in a namespace that enforces Pod Security "restricted".
#[tokio::test]
async fn rendered_manifests_pass_a_server_side_dry_run() -> Result<()> {
    harness::with_namespace("chart-dry-run", |env: TestEnv| async move {
        env.enforce_restricted_pod_security().await?;
        // The ServiceMonitor and PodMonitor kinds, as a cluster with prometheus-operator has them.
        let monitoring = lmi_e2e::monitoring_crds::install(&env.client, &Paths::from_env()).await?;
        assert_eq!(monitoring.len(), 3, "{monitoring:?}");
        // The HTTPRoute kind, as a cluster with the Gateway API has it.
        let gateway = lmi_e2e::gateway_crds::install(&env.client).await?;
        assert!(
            gateway.iter().any(|c| c.starts_with("httproutes.")),
            "{gateway:?}"
        );
        for group in ["monitoring.coreos.com", "gateway.networking.k8s.io"] {
            harness::eventually(
                &format!("{group} to be served"),
                std::time::Duration::from_secs(30),
                || async {
                    Ok(kube::discovery::group(&env.client, group)
                        .await
                        .ok()
                        .map(|_| ()))
                },
            )
            .await?;
        }
        let dry_run = ApplyOptions { dry_run: true };
        let mut failures = Vec::new();
        for (what, extra) in value_sets() {
            let mut docs = template(&env.namespace, &extra, true).await?;
            // CRDs first, so that objects of the chart's own kinds could follow.
            docs.sort_by_key(|d| kind(d) != "CustomResourceDefinition");
            let mut applied = 0;
            for doc in &docs {
                // Pods need their ServiceAccount to exist: those are created for real (in the
                // test's namespace, deleted with it).
                let options = if kind(doc) == "ServiceAccount" {
                    ApplyOptions { dry_run: false }
                } else {
                    dry_run
                };
                match manifests::apply(&env.client, &env.namespace, doc, options).await {
                    Ok(_) => applied += 1,
                    Err(e) => failures.push(format!("{what}: {} {}: {e}", kind(doc), name(doc))),
                }
            }
            for deployment in docs
                .iter()
                .filter(|d| matches!(kind(d), "Deployment" | "StatefulSet"))
            {
                let template = &deployment["spec"]["template"];
                // A StatefulSet's claims become volumes of its pods.
                let mut spec = template["spec"].clone();
                for claim in deployment["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(volumes) = spec["volumes"].as_array_mut() {
                        volumes.push(json!({"name": claim["metadata"]["name"], "emptyDir": {}}));
                    }
                }
                let pod = json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": format!("{}-pod-security", name(deployment)),
                        "labels": template["metadata"]["labels"],
                    },
                    "spec": spec,
                });
                match manifests::apply(&env.client, &env.namespace, &pod, dry_run).await {
                    Ok(_) => applied += 1,
                    Err(e) => failures.push(format!(
                        "{what}: the pod of {} {} under Pod Security restricted: {e}",
                        kind(deployment),
                        name(deployment)
                    )),
                }
            }
            println!("{what}: {applied} objects passed the dry run");
        }
        assert!(
            failures.is_empty(),
            "rejected by the apiserver:\n{}",
            failures.join("\n")
        );
        Ok(())
    })
    .await
}

/// `helm install` with the images `lmi-dev` builds (`ci/local-values.yaml`): the operator (two
/// replicas, one leading) and the router run as pods on the main job's real node, as the tests'
/// operator instance; the tests' Static provider (the example's, renamed) and a function published
/// through that operator answer through the router's Service.
#[tokio::test]
async fn helm_install_runs_the_operator_and_the_router_on_the_real_node() -> Result<()> {
    // The installed operator acts on the tests' instance: no other operator of it may run
    // meanwhile.
    let _one_operator = operator_harness::exclusive().await;
    harness::with_namespace("chart-install", |env: TestEnv| async move {
        let kubeconfig = harness::kubeconfig().await?.display().to_string();
        let chart = chart_dir().display().to_string();
        let values = local_values().display().to_string();
        let helm = helm().await?;
        let installed = helm
            .run(&[
                "install",
                "lmi",
                &chart,
                "--namespace",
                &env.namespace,
                "--values",
                &values,
                // The tests' operator instance: the installed operator serves the tests' objects
                // and leaves the main job's alone (and the main job's operator leaves these).
                "--set",
                &format!("operator.instance={}", harness::E2E_INSTANCE),
                // The main job applied ClusterRole lmi-invoker from crds/yaml (Helm would not take
                // it over); install_serves_a_function applies it either way.
                "--set",
                "router.auth.createInvokerClusterRole=false",
                // Likewise lmi-edit and lmi-view: admission_policies.rs applies them from
                // crds/yaml, and they are cluster-wide.
                "--set",
                "rbac.aggregateToDefaultRoles=false",
                "--kubeconfig",
                &kubeconfig,
                "--wait",
                "--timeout",
                "180s",
            ])
            .await;
        // A failed install is uninstalled too: it leaves cluster-wide objects (ClusterRoles,
        // admission policies) and the NetworkPolicy in `default` that the next install trips on.
        // So is one whose checks panicked (an assert): the panic is caught here and becomes the
        // test's error after the clean-up.
        let outcome = match installed {
            Ok(_) => std::panic::AssertUnwindSafe(install_serves_a_function(&env))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(Error::Other(format!("a check panicked: {message}")))
                }),
            Err(e) => Err(e),
        };
        // The provider's finalizer needs the installed operator: delete before uninstalling.
        let cleaned =
            operator_harness::tear_down(&env.client, &env.namespace, TEST_CAPACITY_PROVIDER).await;
        if cleaned.is_err() {
            operator_harness::force_remove(&env.client, TEST_CAPACITY_PROVIDER).await;
        }
        let uninstalled = helm
            .run(&[
                "uninstall",
                "lmi",
                "--namespace",
                &env.namespace,
                "--kubeconfig",
                &kubeconfig,
                "--wait",
            ])
            .await
            .map(|_| ());
        outcome.and(cleaned).and(uninstalled)
    })
    .await
}

async fn install_serves_a_function(env: &TestEnv) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    for name in ["lmi-operator", "lmi-router"] {
        let status = deployments.get(name).await?.status.unwrap_or_default();
        assert_eq!(
            status.ready_replicas,
            Some(2),
            "{name}: both replicas ready"
        );
    }
    operator_harness::apply_real_node_provider(&env.client).await?;
    let function = json!({
        "apiVersion": "lmi.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello", "namespace": env.namespace},
        "spec": {
            "capacityProviderConfig": {"capacityProviderName": TEST_CAPACITY_PROVIDER, "executionEnvironmentMemoryGiBPerVCpu": 2},
            "code": {"imageUri": PYTHON_FUNCTION_IMAGE},
            "architecture": "x86_64",
            "memorySize": 2048,
            "publish": true,
            "scalingConfig": {"minExecutionEnvironments": 1, "maxExecutionEnvironments": 1},
            "url": {"authType": "NONE"}
        }
    });
    operator_harness::create(
        &Api::<Function>::namespaced(env.client.clone(), &env.namespace),
        function,
    )
    .await?;
    harness::eventually(
        "hello-v1 to be Active",
        Duration::from_secs(120),
        || async {
            Ok(
                operator_harness::version_state(&env.client, &env.namespace, "hello-v1")
                    .await?
                    .filter(|(state, _)| state == "Active"),
            )
        },
    )
    .await?;

    // The router's Service, reached from the host through kube-proxy; the namespace goes in the
    // ARN's account field (docs/data-plane.md).
    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.namespace);
    let ip = services
        .get("lmi-router")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or_else(|| Error::Other("the router Service has no ClusterIP".into()))?;
    let arn = format!("arn:aws:lambda:us-east-1:{}:function:hello", env.namespace);
    let url = format!("http://{ip}:80/2015-03-31/functions/{arn}/invocations");
    // Authentication is on in the chart: an anonymous call is refused, and an in-cluster caller's
    // service-account token for the router's audience, with lmi-invoker bound, is let through.
    let (status, body) = invoke(&url, r#"{"name": "chart"}"#, None).await?;
    assert_eq!(status, 403, "anonymous: {body}");
    access::apply_invoker_role(&env.client).await?;
    access::create_service_account(&env.client, &env.namespace, "caller").await?;
    access::bind_invoker(
        &env.client,
        &env.namespace,
        "caller-invoker",
        json!({"kind": "ServiceAccount", "name": "caller", "namespace": env.namespace}),
    )
    .await?;
    let token =
        access::service_account_token(&env.client, &env.namespace, "caller", "lmi-router").await?;
    let answer = harness::eventually(
        "an answer through the router Service",
        Duration::from_secs(60),
        || async {
            Ok(invoke(&url, r#"{"name": "chart"}"#, Some(&token))
                .await
                .ok()
                .filter(|(status, _)| *status == 200))
        },
    )
    .await?;
    assert_eq!(answer.1["message"], "Hello, chart!", "{}", answer.1);

    // Its function URL: shown in status.url (the chart's domain, host form), and served on the
    // Service's url port; the host form by Host header, the path form on any host.
    let id = lmi_crds::function_url::url_id(&env.namespace, "hello");
    let shown = harness::eventually("status.url", Duration::from_secs(30), || async {
        Ok(
            Api::<Function>::namespaced(env.client.clone(), &env.namespace)
                .get("hello")
                .await?
                .status
                .and_then(|s| s.url),
        )
    })
    .await?;
    assert_eq!(shown, format!("http://{id}.lambda-url.localhost/"));
    for (what, request) in [
        (
            "host form",
            http::Request::get(format!("http://{ip}:8081/plain?name=url"))
                .header("host", format!("{id}.lambda-url.localhost")),
        ),
        (
            "path form",
            http::Request::get(format!("http://{ip}:8081/{id}/plain?name=url")),
        ),
    ] {
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Other(format!("request: {e}")))?;
        let (status, body) = send(request).await?;
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(
            (status, &answer["message"]),
            (200, &json!("Hello, url!")),
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    // An Event through the chart's own NATS: stored (202), then run by a router's dispatcher.
    let stateful_sets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &env.namespace);
    let nats = stateful_sets
        .get("lmi-nats")
        .await?
        .status
        .unwrap_or_default();
    assert_eq!(nats.ready_replicas, Some(1), "the chart's NATS is ready");
    let (status, body) = invoke_as(&url, r#"{"name": "event"}"#, Some(&token), "Event").await?;
    assert_eq!(status, 202, "an Event is stored: {body}");
    let metrics = format!("http://{ip}:80/metrics");
    harness::eventually(
        "the event to run (a router's lmi_router_event_age_seconds_count)",
        Duration::from_secs(60),
        || async {
            // Two replicas behind the Service: whichever dispatched it counts it.
            let page = get_text(&metrics).await.unwrap_or_default();
            Ok(page
                .lines()
                .find_map(|l| l.strip_prefix("lmi_router_event_age_seconds_count "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|n| *n >= 1.0))
        },
    )
    .await?;
    monitoring_works_as_shipped(env).await?;
    Ok(())
}

/// What the chart's ServiceMonitor and PodMonitor ask prometheus-operator to scrape, as the
/// scrape jobs it generates (Kubernetes service discovery, the keep rules for its selectors, the
/// `namespace`/`pod`/`service` target labels it adds, then the monitor's own relabelings), run
/// by a real Prometheus against the installed operator and router and the function's EE. Every
/// dashboard query must evaluate, the ones about this function must find it, and no series may
/// carry `exported_namespace` (a series' own `namespace` clashing with the target's).
async fn monitoring_works_as_shipped(env: &TestEnv) -> Result<()> {
    let paths = Paths::from_env();
    let prometheus = lmi_e2e::prometheus::ensure_server(&paths).await?;
    let monitors = template(
        &env.namespace,
        &[
            "--values".into(),
            local_values().display().to_string(),
            "--set".into(),
            "metrics.serviceMonitor.enabled=true".into(),
            "--set".into(),
            "metrics.podMonitor.enabled=true".into(),
        ],
        false,
    )
    .await?;
    let monitor = |k: &str| {
        monitors
            .iter()
            .find(|d| kind(d) == k)
            .cloned()
            .ok_or_else(|| Error::Other(format!("no {k} rendered")))
    };
    let kubeconfig = harness::kubeconfig().await?.display().to_string();
    let config = scrape_config(
        &kubeconfig,
        &env.namespace,
        &monitor("ServiceMonitor")?,
        &monitor("PodMonitor")?,
    );
    let dir = std::env::temp_dir().join(format!("lmi-prometheus-{}", env.namespace));
    std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
    let config_file = dir.join("prometheus.yml");
    // JSON is YAML: Prometheus reads it as its config.
    std::fs::write(&config_file, serde_json::to_string_pretty(&config)?)
        .map_err(Error::io("writing", &config_file))?;
    let port = lmi_e2e::nats::free_port()?;
    let log = std::fs::File::create(dir.join("prometheus.log"))
        .map_err(Error::io("creating", &dir.join("prometheus.log")))?;
    let _server = tokio::process::Command::new(&prometheus)
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(Error::io("opening", &dir))?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::io("starting", &prometheus))?;
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let query = |q: String| {
        let url = format!("{api}/query?query={}", query_escape(&q));
        async move {
            let text = get_text(&url).await?;
            let answer: Value = serde_json::from_str(&text)?;
            if answer["status"] != "success" {
                return Err(Error::Other(format!("{q}: {text}")));
            }
            Ok(answer["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default())
        }
    };
    // Every kind of target scraped: the operator, the router and the EE.
    for metric in [
        "lmi_execution_environments",
        "lmi_router_invocations_total",
        "lmi_ee_concurrency_limit",
    ] {
        let selector = format!(
            r#"{metric}{{function_namespace="{}", function="hello"}}"#,
            env.namespace
        );
        harness::eventually(
            &format!("Prometheus to hold {selector}"),
            Duration::from_secs(90),
            || async { Ok(query(selector.clone()).await.ok().filter(|r| !r.is_empty())) },
        )
        .await?;
    }
    // Errors, not panics, from here on: a panic would skip the test's helm uninstall.
    let exported = query(r#"count({exported_namespace!=""})"#.to_string()).await?;
    if !exported.is_empty() {
        return Err(Error::Other(format!(
            "series with exported_namespace: {exported:?}"
        )));
    }
    // The dashboard, with this function picked in its variables.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("dashboards/lmi.json"))
            .map_err(Error::io("reading", &chart_dir()))?,
    )?;
    let mut exprs = Vec::new();
    let mut stack = vec![&dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(expr) = map.get("expr").and_then(Value::as_str) {
                    exprs.push(
                        expr.replace("$namespace", &env.namespace)
                            .replace("$function", "hello")
                            .replace("$capacity_provider", ".*"),
                    );
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    // The panels about the function's EEs and invocations show it once rates have two samples.
    let required = [
        "lmi_ee_concurrency_limit",
        "lmi_execution_environments_ready",
        "lmi_router_invocations_total",
    ];
    let empty = harness::eventually(
        "the dashboard's panels about the function to show it",
        Duration::from_secs(60),
        || async {
            let mut empty = Vec::new();
            for expr in &exprs {
                // Every query must evaluate: an error ends the test.
                if query(expr.clone()).await?.is_empty() {
                    empty.push(expr.clone());
                }
            }
            let shown = !required
                .iter()
                .any(|m| empty.iter().any(|e: &String| e.contains(m)));
            Ok(shown.then_some(empty))
        },
    )
    .await?;
    println!(
        "{} dashboard queries evaluated; without data here (no events, throttles or errors): {empty:#?}",
        exprs.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The scrape jobs prometheus-operator generates for `service_monitor` (in `namespace`) and
/// `pod_monitor` (any namespace), with Kubernetes service discovery through `kubeconfig`.
fn scrape_config(
    kubeconfig: &str,
    namespace: &str,
    service_monitor: &Value,
    pod_monitor: &Value,
) -> Value {
    let keep = |label: &str, regex: &str| json!({"source_labels": [label], "regex": regex, "action": "keep"});
    let copy =
        |label: &str, target: &str| json!({"source_labels": [label], "target_label": target});
    let relabelings = |endpoint: &Value| -> Vec<Value> {
        endpoint["relabelings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                json!({
                    "source_labels": r["sourceLabels"],
                    "target_label": r["targetLabel"],
                })
            })
            .collect()
    };
    let mut jobs = Vec::new();
    let labels = service_monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (i, endpoint) in service_monitor["spec"]["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut relabel: Vec<Value> = labels
            .iter()
            .map(|(k, v)| {
                keep(
                    &format!("__meta_kubernetes_service_label_{}", sanitize(k)),
                    v.as_str().unwrap_or_default(),
                )
            })
            .collect();
        relabel.push(keep(
            "__meta_kubernetes_endpointslice_port_name",
            endpoint["port"].as_str().unwrap_or_default(),
        ));
        relabel.push(copy("__meta_kubernetes_namespace", "namespace"));
        relabel.push(copy("__meta_kubernetes_service_name", "service"));
        relabel.push(copy("__meta_kubernetes_pod_name", "pod"));
        relabel.extend(relabelings(endpoint));
        jobs.push(json!({
            "job_name": format!("serviceMonitor/{namespace}/{}/{i}", name(service_monitor)),
            "metrics_path": endpoint["path"],
            "scrape_interval": "2s",
            // EndpointSlices (prometheus-operator's serviceDiscoveryRole EndpointSlice): the
            // local cluster runs no Endpoints controller, as Kubernetes deprecates them.
            "kubernetes_sd_configs": [{"role": "endpointslice", "kubeconfig_file": kubeconfig,
                                       "namespaces": {"names": [namespace]}}],
            "relabel_configs": relabel,
        }));
    }
    let pod_labels = pod_monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (i, endpoint) in pod_monitor["spec"]["podMetricsEndpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut relabel: Vec<Value> = pod_labels
            .iter()
            .map(|(k, v)| {
                keep(
                    &format!("__meta_kubernetes_pod_label_{}", sanitize(k)),
                    v.as_str().unwrap_or_default(),
                )
            })
            .collect();
        relabel.push(keep(
            "__meta_kubernetes_pod_container_port_name",
            endpoint["port"].as_str().unwrap_or_default(),
        ));
        relabel.push(copy("__meta_kubernetes_namespace", "namespace"));
        relabel.push(copy("__meta_kubernetes_pod_name", "pod"));
        relabel.extend(relabelings(endpoint));
        jobs.push(json!({
            "job_name": format!("podMonitor/{namespace}/{}/{i}", name(pod_monitor)),
            "metrics_path": endpoint["path"],
            "scrape_interval": "2s",
            "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": kubeconfig}],
            "relabel_configs": relabel,
        }));
    }
    json!({"global": {"scrape_interval": "2s", "evaluation_interval": "2s"}, "scrape_configs": jobs})
}

/// A Kubernetes label name as Prometheus' service discovery spells it in meta labels.
fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `q` escaped for a URL's query string.
fn query_escape(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One Invoke API request (what the SDKs send), over a fresh connection, with a bearer token if
/// one is given.
async fn invoke(url: &str, payload: &str, token: Option<&str>) -> Result<(u16, Value)> {
    invoke_as(url, payload, token, "RequestResponse").await
}

/// [`invoke`] with an `X-Amz-Invocation-Type`.
async fn invoke_as(
    url: &str,
    payload: &str,
    token: Option<&str>,
    invocation_type: &str,
) -> Result<(u16, Value)> {
    let mut request = http::Request::post(url).header("x-amz-invocation-type", invocation_type);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(payload.to_string())))
        .map_err(|e| Error::Other(format!("request: {e}")))?;
    let (status, body) = send(request).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// A GET's body as text.
async fn get_text(url: &str) -> Result<String> {
    let request = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| Error::Other(format!("request: {e}")))?;
    let (_, body) = send(request).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn send(request: http::Request<Full<Bytes>>) -> Result<(u16, Bytes)> {
    let client: HttpClient<HttpConnector, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .map_err(|e| Error::Other(format!("{e}")))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Other(format!("{e}")))?
        .to_bytes();
    Ok((status, body))
}
