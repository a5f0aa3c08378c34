//! The operator's settings, from flags (`--sidecar-image IMG`) or the environment
//! (`LMI_SIDECAR_IMAGE`); flags win.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::plan::consolidation_times::ConsolidationTimes;
use crate::plan::ee_pod::EeSettings;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub ee: EeSettings,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// Lease used for leader election, and its namespace. None: no election (one replica).
    pub lease: Option<(String, String)>,
    /// How long a NodeClaim may hold no EE before it is deleted.
    pub empty_claim_cooldown: Duration,
    /// How long Karpenter may take to launch a NodeClaim before the operator gives it up and
    /// avoids its instance type in its zone for [`Settings::unavailable_for`].
    pub launch_timeout: Duration,
    /// How long an offering that failed to launch is avoided.
    pub unavailable_for: Duration,
    /// How often every capacity provider is planned again without a change.
    pub resync: Duration,
    /// Cluster name, for the security group of instances when a provider names none.
    pub cluster_name: String,
    /// Karpenter AMI alias of the instances.
    pub ami_alias: String,
    /// The Karpenter node class that NodeClaims name (AWS: one EC2NodeClass per provider).
    pub node_class: crate::karpenter::NodeClassChoice,
    /// How often the autoscaler samples the EEs and decides.
    pub autoscale_interval: Duration,
    /// When consolidation may move EEs off an instance (Karpenter mode).
    pub consolidation: ConsolidationTimes,
    /// The operator instance: only objects labelled `lmi.dev/instance=<it>` are reconciled, or
    /// with None only objects without that label.
    pub instance: Option<String>,
    /// Where the cluster's LMI Secrets live (the invoke key `lmi-invoke-key`).
    pub system_namespace: String,
    /// The routers' event queue, whose stored events per function the operator shows on each
    /// Function (`status.queuedEvents`). None: no events, nothing counted.
    pub nats_url: Option<String>,
    /// Credentials and TLS files for NATS (`LMI_NATS_*_FILE`).
    pub nats_files: lmi_crds::event_queue::NatsFiles,
    /// The address of a function URL, with `{id}` where the URL id goes; shown in each
    /// Function's `status.url`. It says where the routers' URL listener is reached (host form
    /// with a wildcard domain, or path form).
    pub url_template: String,
}

/// The URL template when none is set: the routers' default domain, host form.
pub const DEFAULT_URL_TEMPLATE: &str = "http://{id}.lambda-url.localhost/";

const HELP: &str = "lmi-operator: reconciles lmi.dev CapacityProviders, Functions and FunctionVersions

flags (or environment variables):
  --sidecar-image IMAGE                   LMI_SIDECAR_IMAGE               sidecar image of every EE (required)
  --region REGION                         LMI_REGION                      AWS_REGION given to functions [us-east-1]
  --image-pull-policy POLICY              LMI_IMAGE_PULL_POLICY           for EE containers [image default]
  --image-pull-secrets A,B                LMI_IMAGE_PULL_SECRETS          pull secrets of EE pods, in each function namespace [none]
  --metrics-addr ADDR                     LMI_METRICS_ADDR                /metrics, /healthz, /readyz [0.0.0.0:8080]
  --lease-name NAME                       LMI_LEASE_NAME                  leader election lease [lmi-operator]
  --lease-namespace NS                    LMI_LEASE_NAMESPACE             [POD_NAMESPACE or default]
  --no-leader-election                    LMI_NO_LEADER_ELECTION=1        run as the only replica
  --empty-claim-cooldown-seconds N        LMI_EMPTY_CLAIM_COOLDOWN        keep an empty NodeClaim this long [300]
  --launch-timeout-seconds N              LMI_LAUNCH_TIMEOUT              give up a NodeClaim not launched after this [60]
  --unavailable-seconds N                 LMI_UNAVAILABLE_SECONDS         avoid a type in a zone this long after a failed launch [180]
  --resync-seconds N                      LMI_RESYNC_SECONDS              plan every provider at least this often [30]
  --cluster-name NAME                     LMI_CLUSTER_NAME                for instance security groups [lmi]
  --ami-alias ALIAS                       LMI_AMI_ALIAS                   Karpenter AMI alias [al2023@latest]
  --node-class GROUP/KIND/NAME            LMI_NODE_CLASS                  Karpenter node class of every NodeClaim [karpenter.k8s.aws/EC2NodeClass: one per provider]
  --zones A,B,C                           LMI_ZONES                       zones to launch in, with a GROUP/KIND/NAME node class
  --autoscale-interval-seconds N          LMI_AUTOSCALE_INTERVAL          sample EEs and decide this often [10]
  --consolidation-min-age-seconds N       LMI_CONSOLIDATION_MIN_AGE       consolidate instances at least this old [600]
  --consolidation-settle-seconds N        LMI_CONSOLIDATION_SETTLE        keep a version's EEs put this long after it starts one [120]
  --consolidation-move-timeout-seconds N  LMI_CONSOLIDATION_MOVE_TIMEOUT  call off a move not done after this [600]
  --instance NAME                         LMI_INSTANCE                    reconcile only objects labelled lmi.dev/instance=NAME [none: only unlabelled objects]
  --system-namespace NS                   LMI_SYSTEM_NAMESPACE            holds the invoke key Secret lmi-invoke-key [POD_NAMESPACE or lmi-system]
  --nats-url URL                          LMI_NATS_URL                    the routers' event queue: count each function's queued events [none]
  --url-template URL                      LMI_URL_TEMPLATE                function URLs' address, {id} for the URL id [http://{id}.lambda-url.localhost/]

NATS credentials and TLS, as files (mounted Secrets) named by the environment only:
  LMI_NATS_CREDENTIALS_FILE (a .creds file), LMI_NATS_CA_FILE (requires TLS),
  LMI_NATS_CLIENT_CERT_FILE with LMI_NATS_CLIENT_KEY_FILE (mutual TLS).
";

/// Parses `args` (without the program name), falling back to `env`.
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Settings> {
    let mut flags = std::collections::BTreeMap::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(Error::Config(HELP.to_string())),
            "--no-leader-election" => {
                flags.insert("no-leader-election".to_string(), "1".to_string());
            }
            flag if flag.starts_with("--") => {
                let value = iter
                    .next()
                    .ok_or_else(|| Error::Config(format!("{flag} needs a value\n\n{HELP}")))?;
                flags.insert(flag.trim_start_matches("--").to_string(), value.clone());
            }
            other => {
                return Err(Error::Config(format!(
                    "unexpected argument {other:?}\n\n{HELP}"
                )));
            }
        }
    }
    let get = |flag: &str, var: &str| {
        flags
            .get(flag)
            .cloned()
            .or_else(|| env(var))
            .filter(|v| !v.is_empty())
    };
    let number = |flag: &str, var: &str, default: u64| -> Result<u64> {
        get(flag, var).map_or(Ok(default), |v| {
            v.parse().map_err(|_| {
                Error::Config(format!(
                    "--{flag} must be a whole number of seconds, not {v:?}"
                ))
            })
        })
    };
    let sidecar_image = get("sidecar-image", "LMI_SIDECAR_IMAGE").ok_or_else(|| {
        Error::Config(format!(
            "--sidecar-image (or LMI_SIDECAR_IMAGE) is required\n\n{HELP}"
        ))
    })?;
    let metrics_addr =
        get("metrics-addr", "LMI_METRICS_ADDR").unwrap_or_else(|| "0.0.0.0:8080".to_string());
    let metrics_addr = metrics_addr.parse().map_err(|_| {
        Error::Config(format!(
            "--metrics-addr {metrics_addr:?} is not an address like 0.0.0.0:8080"
        ))
    })?;
    let no_election = get("no-leader-election", "LMI_NO_LEADER_ELECTION")
        .is_some_and(|v| v != "0" && v != "false");
    let lease = (!no_election).then(|| {
        (
            get("lease-name", "LMI_LEASE_NAME").unwrap_or_else(|| "lmi-operator".to_string()),
            get("lease-namespace", "LMI_LEASE_NAMESPACE")
                .or_else(|| env("POD_NAMESPACE"))
                .unwrap_or_else(|| "default".to_string()),
        )
    });
    Ok(Settings {
        ee: EeSettings {
            sidecar_image,
            region: get("region", "LMI_REGION").unwrap_or_else(|| "us-east-1".to_string()),
            image_pull_policy: get("image-pull-policy", "LMI_IMAGE_PULL_POLICY"),
            image_pull_secrets: get("image-pull-secrets", "LMI_IMAGE_PULL_SECRETS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        },
        metrics_addr,
        lease,
        empty_claim_cooldown: Duration::from_secs(number(
            "empty-claim-cooldown-seconds",
            "LMI_EMPTY_CLAIM_COOLDOWN",
            300,
        )?),
        launch_timeout: Duration::from_secs(
            number("launch-timeout-seconds", "LMI_LAUNCH_TIMEOUT", 60)?.max(1),
        ),
        unavailable_for: Duration::from_secs(number(
            "unavailable-seconds",
            "LMI_UNAVAILABLE_SECONDS",
            180,
        )?),
        resync: Duration::from_secs(number("resync-seconds", "LMI_RESYNC_SECONDS", 30)?.max(1)),
        cluster_name: get("cluster-name", "LMI_CLUSTER_NAME").unwrap_or_else(|| "lmi".to_string()),
        ami_alias: get("ami-alias", "LMI_AMI_ALIAS").unwrap_or_else(|| "al2023@latest".to_string()),
        node_class: node_class(
            get("node-class", "LMI_NODE_CLASS"),
            get("zones", "LMI_ZONES"),
        )?,
        autoscale_interval: Duration::from_secs(
            number("autoscale-interval-seconds", "LMI_AUTOSCALE_INTERVAL", 10)?.max(1),
        ),
        consolidation: consolidation_times(&number)?,
        instance: get("instance", "LMI_INSTANCE")
            .map(|name| valid_instance(&name).map(|()| name))
            .transpose()?,
        system_namespace: get("system-namespace", "LMI_SYSTEM_NAMESPACE")
            .or_else(|| env("POD_NAMESPACE").filter(|v| !v.is_empty()))
            .unwrap_or_else(|| DEFAULT_SYSTEM_NAMESPACE.to_string()),
        nats_url: get("nats-url", "LMI_NATS_URL"),
        nats_files: lmi_crds::event_queue::NatsFiles::from_env(&env).map_err(Error::Config)?,
        url_template: url_template(get("url-template", "LMI_URL_TEMPLATE"))?,
    })
}

/// The node class choice; the zones are a comma-separated list.
fn node_class(
    given: Option<String>,
    zones: Option<String>,
) -> Result<crate::karpenter::NodeClassChoice> {
    let zones: Vec<String> = zones
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|z| !z.is_empty())
        .map(str::to_string)
        .collect();
    match given {
        None => crate::karpenter::NodeClassChoice::parse(
            &format!(
                "{}/{}",
                crate::karpenter::EC2_NODE_CLASS.0,
                crate::karpenter::EC2_NODE_CLASS.1
            ),
            &zones,
        )
        .map_err(|e| Error::Config(format!("{e}\n\n{HELP}"))),
        Some(value) => crate::karpenter::NodeClassChoice::parse(&value, &zones)
            .map_err(|e| Error::Config(format!("{e}\n\n{HELP}"))),
    }
}

/// The URL template, which must place the URL id once.
fn url_template(given: Option<String>) -> Result<String> {
    let template = given.unwrap_or_else(|| DEFAULT_URL_TEMPLATE.to_string());
    let placeholder = lmi_crds::function_url::URL_ID_PLACEHOLDER;
    if template.matches(placeholder).count() == 1
        && (template.starts_with("http://") || template.starts_with("https://"))
    {
        Ok(template)
    } else {
        Err(Error::Config(format!(
            "--url-template {template:?} must be an http(s) URL with {placeholder} once, e.g. https://{placeholder}.lambda-url.example.com/ or https://lmi.example.com/{placeholder}/"
        )))
    }
}

/// The namespace of the LMI Secrets when neither a flag nor `POD_NAMESPACE` names one.
pub const DEFAULT_SYSTEM_NAMESPACE: &str = "lmi-system";

/// An instance name is a label value: at most 63 characters, alphanumerics with `-`, `_` or `.`
/// inside.
fn valid_instance(name: &str) -> Result<()> {
    let inner_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.len() <= 63 && inner_ok && ends_ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "--instance {name:?} must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )))
    }
}

/// The consolidation times from their flags, defaulting to the planner's constants.
fn consolidation_times(
    number: &impl Fn(&str, &str, u64) -> Result<u64>,
) -> Result<ConsolidationTimes> {
    let defaults = ConsolidationTimes::default();
    let seconds = |flag: &str, var: &str, default: i64| -> Result<i64> {
        let value = number(flag, var, u64::try_from(default).unwrap_or(0))?;
        i64::try_from(value).map_err(|_| Error::Config(format!("--{flag} {value} is too large")))
    };
    Ok(ConsolidationTimes {
        min_instance_age_seconds: seconds(
            "consolidation-min-age-seconds",
            "LMI_CONSOLIDATION_MIN_AGE",
            defaults.min_instance_age_seconds,
        )?,
        settle_seconds: seconds(
            "consolidation-settle-seconds",
            "LMI_CONSOLIDATION_SETTLE",
            defaults.settle_seconds,
        )?,
        // 0 would call every move off the moment it starts.
        move_timeout_seconds: seconds(
            "consolidation-move-timeout-seconds",
            "LMI_CONSOLIDATION_MOVE_TIMEOUT",
            defaults.move_timeout_seconds,
        )?
        .max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_win_over_environment_and_defaults_fill_the_rest() {
        let env = |k: &str| match k {
            "LMI_SIDECAR_IMAGE" => Some("env-image".to_string()),
            "LMI_REGION" => Some("eu-west-1".to_string()),
            _ => None,
        };
        let s = parse(
            &args(&[
                "--sidecar-image",
                "flag-image",
                "--empty-claim-cooldown-seconds",
                "5",
            ]),
            env,
        )
        .unwrap();
        assert_eq!(s.ee.sidecar_image, "flag-image");
        assert_eq!(s.ee.region, "eu-west-1");
        assert_eq!(s.empty_claim_cooldown, Duration::from_secs(5));
        assert_eq!(
            s.lease,
            Some(("lmi-operator".to_string(), "default".to_string()))
        );
        assert_eq!(s.metrics_addr.port(), 8080);
        assert_eq!(s.consolidation, ConsolidationTimes::default());
        assert_eq!(s.system_namespace, "lmi-system");
    }

    #[test]
    fn the_system_namespace_is_the_flag_else_the_pods() {
        let pod = |k: &str| (k == "POD_NAMESPACE").then(|| "lmi".to_string());
        let s = parse(&args(&["--sidecar-image", "i"]), pod).unwrap();
        assert_eq!(s.system_namespace, "lmi");
        let s = parse(
            &args(&["--sidecar-image", "i", "--system-namespace", "ops"]),
            pod,
        )
        .unwrap();
        assert_eq!(s.system_namespace, "ops");
    }

    #[test]
    fn the_url_template_places_the_id_once_in_an_http_url() {
        let none = |_: &str| None;
        let s = parse(&args(&["--sidecar-image", "i"]), none).unwrap();
        assert_eq!(s.url_template, DEFAULT_URL_TEMPLATE);
        let path_form = "https://lmi.example.com/{id}/";
        let s = parse(
            &args(&["--sidecar-image", "i", "--url-template", path_form]),
            none,
        )
        .unwrap();
        assert_eq!(s.url_template, path_form);
        for bad in [
            "https://lmi.example.com/",
            "ftp://{id}.x/",
            "http://{id}.{id}/",
        ] {
            assert!(
                parse(
                    &args(&["--sidecar-image", "i", "--url-template", bad]),
                    none
                )
                .is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn consolidation_times_come_from_flags_or_the_environment() {
        let env = |k: &str| (k == "LMI_CONSOLIDATION_SETTLE").then(|| "7".to_string());
        let s = parse(
            &args(&[
                "--sidecar-image",
                "i",
                "--consolidation-min-age-seconds",
                "5",
            ]),
            env,
        )
        .unwrap();
        assert_eq!(s.consolidation.min_instance_age_seconds, 5);
        assert_eq!(s.consolidation.settle_seconds, 7);
        assert_eq!(
            s.consolidation.move_timeout_seconds,
            crate::plan::consolidation_times::MOVE_TIMEOUT_SECONDS
        );
        let err = parse(
            &args(&[
                "--sidecar-image",
                "i",
                "--consolidation-settle-seconds",
                "-1",
            ]),
            |_: &str| None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let none = |_: &str| None;
        let err = parse(&args(&[]), none).unwrap_err().to_string();
        assert!(
            err.contains("--sidecar-image (or LMI_SIDECAR_IMAGE) is required"),
            "{err}"
        );
        let err = parse(
            &args(&["--sidecar-image", "i", "--resync-seconds", "soon"]),
            none,
        )
        .unwrap_err();
        assert!(err.to_string().contains("whole number"));
        assert!(parse(&args(&["--sidecar-image"]), none).is_err());
        assert!(parse(&args(&["stray"]), none).is_err());
        let s = parse(
            &args(&["--sidecar-image", "i", "--no-leader-election"]),
            none,
        )
        .unwrap();
        assert_eq!(s.lease, None);
        assert_eq!(s.instance, None);
    }

    #[test]
    fn the_instance_is_a_label_value() {
        let none = |_: &str| None;
        let s = parse(&args(&["--sidecar-image", "i", "--instance", "e2e"]), none).unwrap();
        assert_eq!(s.instance.as_deref(), Some("e2e"));
        for bad in ["-e2e", "e2e!", "a b", &"x".repeat(64)] {
            let err = parse(&args(&["--sidecar-image", "i", "--instance", bad]), none);
            assert!(
                err.is_err_and(|e| e.to_string().contains("label value")),
                "{bad}"
            );
        }
    }
}
