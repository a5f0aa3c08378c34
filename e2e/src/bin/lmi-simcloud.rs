//! `lmi-simcloud`: the simulated cloud for local runs (not part of the product). Installs
//! Karpenter's CRDs into the cluster `KUBECONFIG` names, then plays Karpenter's part: resolves
//! EC2NodeClass subnets to zones and turns NodeClaims into kwok nodes.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use lmi_e2e::simcloud::{self, SimCloud};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client=off")),
        )
        .init();
    let delay = std::env::var("LMI_SIM_LAUNCH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let cloud = SimCloud {
        launch_delay: Duration::from_millis(delay),
        // The same instance as the operator it serves (`lmi-operator --instance`).
        instance: std::env::var("LMI_INSTANCE").ok().filter(|v| !v.is_empty()),
        ..SimCloud::default()
    };
    let result = async {
        let client = kube::Client::try_default().await?;
        lmi_e2e::karpenter_crds::install(&client).await?;
        simcloud::run(client, cloud).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lmi-simcloud: {e}");
            ExitCode::FAILURE
        }
    }
}
