//! `lmi-dev`: the local Kubernetes control plane for development and tests, without Docker.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lmi_e2e::cluster::{self, UpOptions};
use lmi_e2e::paths::Paths;
use lmi_e2e::{Result, images, versions};

#[derive(Parser)]
#[command(
    name = "lmi-dev",
    about = "Local Kubernetes control plane (etcd, apiserver, controller-manager, scheduler, kwok) and a NATS server with JetStream, without Docker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build what is missing, start the cluster (no-op when it already runs) and install the CRDs.
    Up {
        /// Folder of CRD manifests to install.
        #[arg(long)]
        crds: Option<PathBuf>,
    },
    /// Stop every process `up` started and remove the cluster state (logs are kept).
    Down,
    /// Show each component, its pid and whether it runs.
    Status,
    /// Print `export KUBECONFIG=...` and `export LMI_NATS_URL=...` for the local cluster.
    Env,
    /// Only build the binaries for the pinned versions.
    Build,
    /// Build Knative's queue-proxy (the data-plane benchmark's comparison row) and print its path.
    QueueProxy,
    /// Write the operator's, the router's and the sidecar's images as OCI archives for a
    /// registry (`DIR/lmi-operator.tar`, ...), and print the commands that push them.
    ExportImages {
        /// Where the archives go.
        #[arg(long)]
        out: PathBuf,
        /// Build the programs with `--release` (what a registry should get; about 10 minutes
        /// here). Without it the local cluster's debug builds are used.
        #[arg(long)]
        release: bool,
        /// The registry the printed commands push to (the chart's `image.registry`).
        #[arg(long, default_value = "REGISTRY")]
        registry: String,
        /// The tag the printed commands push (the chart's `image.tag`).
        #[arg(long, default_value = "0.1.0")]
        tag: String,
        /// The lmi workspace; default: the one lmi-dev was built from.
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// Build the images and import them into the local node's containerd.
    Images {
        /// containerd's socket (default: each real node's).
        #[arg(long)]
        containerd: Option<PathBuf>,
        /// Only build the image archives (under $LMI_CACHE_DIR/images/archives).
        #[arg(long)]
        no_import: bool,
        /// The lmi workspace (for cargo and examples/functions); default: the one lmi-dev was
        /// built from.
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in CI logs or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lmi-dev: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let paths = Paths::from_env();
    match cli.command {
        Command::Up { crds } => {
            let mut options = UpOptions::default();
            if let Some(dir) = crds {
                options.crd_dir = dir;
            }
            let running = cluster::up(&paths, &options).await?;
            eprintln!(
                "cluster {} (Kubernetes {}); CRDs: {}; logs in {}",
                if running.already_running {
                    "was already running"
                } else {
                    "started"
                },
                versions::KUBERNETES,
                if running.crds.is_empty() {
                    "none".to_string()
                } else {
                    running.crds.join(", ")
                },
                paths.log_dir().display()
            );
            print_env(&running.kubeconfig);
            Ok(ExitCode::SUCCESS)
        }
        Command::Down => {
            cluster::down(&paths).await?;
            eprintln!(
                "cluster stopped; logs kept in {}",
                paths.log_dir().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let statuses = cluster::component_status(&paths);
            for s in &statuses {
                let pid = s.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
                println!(
                    "{:<24} {:<8} {}",
                    s.component,
                    pid,
                    if s.running { "running" } else { "stopped" }
                );
            }
            let healthy = cluster::is_healthy(&paths).await;
            println!(
                "apiserver {}; kubeconfig {}; logs {}",
                if healthy { "ready" } else { "not ready" },
                paths.kubeconfig().display(),
                paths.log_dir().display()
            );
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Env => {
            print_env(&paths.kubeconfig());
            Ok(ExitCode::SUCCESS)
        }
        Command::QueueProxy => {
            let queue = lmi_e2e::queue_proxy::ensure_built(&paths).await?;
            println!("{}", queue.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Build => {
            let binaries = lmi_e2e::gobuild::ensure_built(&paths).await?;
            eprintln!("binaries ready: {binaries:#?}");
            Ok(ExitCode::SUCCESS)
        }
        Command::ExportImages {
            out,
            release,
            registry,
            tag,
            workspace,
        } => {
            let workspace = workspace.unwrap_or_else(lmi_e2e::harness::repo_root);
            let exported = images::export_product_images(&paths, &workspace, &out, release).await?;
            for image in &exported {
                eprintln!(
                    "{} {} (linux/amd64)",
                    image.archive.display(),
                    image.manifest_digest
                );
            }
            for image in &exported {
                println!(
                    "skopeo copy oci-archive:{} docker://{registry}/{}:{tag}",
                    image.archive.display(),
                    image.repository
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Images {
            containerd,
            no_import,
            workspace,
        } => {
            let workspace = workspace.unwrap_or_else(lmi_e2e::harness::repo_root);
            let built = images::ensure_images(&paths, &workspace).await?;
            for image in &built {
                println!(
                    "{:<34} {} {} {}",
                    image.name,
                    if image.built { "built " } else { "reused" },
                    image.manifest_digest,
                    image.archive.display()
                );
            }
            if !no_import {
                let sockets = match containerd {
                    Some(socket) => vec![socket],
                    None => lmi_e2e::node::containerd_nodes()
                        .map(|n| n.containerd_address())
                        .collect(),
                };
                for socket in sockets {
                    images::import_all(&built, &socket).await?;
                    eprintln!("imported into {} (namespace k8s.io)", socket.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `up` and `env` print for `eval`: the cluster's kubeconfig and its NATS server.
fn print_env(kubeconfig: &std::path::Path) {
    println!("export KUBECONFIG={}", kubeconfig.display());
    println!(
        "export {}={}",
        lmi_e2e::nats::URL_ENV,
        lmi_e2e::nats::local_url()
    );
}
