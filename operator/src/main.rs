//! `lmi-operator`: the LMI control plane.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use lmi_operator::controllers::run::run;
use lmi_operator::error::{Error, Result};
use lmi_operator::{http, leader, metrics::Metrics, settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let json = std::env::var("LMI_LOG_FORMAT").is_ok_and(|f| f == "json");
    if json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match operate().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Config(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %e, "lmi-operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn operate() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = settings::parse(&args, |k| std::env::var(k).ok())?;
    let metrics = Metrics::new()?;
    let _server = http::serve(settings.metrics_addr, metrics.clone()).await?;
    let client = metrics.counting_client().await?;

    let lost_lease = match &settings.lease {
        Some((name, namespace)) => Some(leader::acquire(client.clone(), name, namespace).await?),
        None => None,
    };
    let shutdown = async move {
        let terminate = async {
            #[cfg(unix)]
            if let Ok(mut sigterm) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                sigterm.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        let lease_lost = async {
            match lost_lease {
                Some(mut rx) => {
                    let _ = rx.wait_for(|leading| !*leading).await;
                    tracing::warn!("lost the lease: stopping");
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
            _ = lease_lost => {}
        }
    };
    let source = std::sync::Arc::new(lmi_operator::utilization::HttpSource::new(
        std::time::Duration::from_secs(2),
    ));
    run(client, settings, metrics, source, shutdown).await;
    Ok(())
}
