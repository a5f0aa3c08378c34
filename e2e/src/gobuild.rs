//! Builds the control-plane binaries from their Go modules, once per pinned version.
//!
//! Each build gets a generated wrapper module in `$CACHE/<name>-<version>/src` (the Go sources are
//! embedded from `e2e/gomod/`; go.mod is written from [`crate::versions`]) and installs into
//! `$CACHE/<name>-<version>/bin`. The bin directory is filled by a rename of a finished build, so an
//! interrupted build never leaves a half-built cache that looks complete.
//!
//! The NATS server is built here too (so the first `up` builds it), by [`crate::nats`], which has
//! its own lock and recipe so that tests can build it without the control plane.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tracing::info;

use crate::error::{Error, Result};
use crate::logs;
use crate::paths::Paths;
use crate::versions;

/// Paths of the built binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    /// The real node's agent (issue "A real node"): built with the control plane, same version.
    pub kubelet: PathBuf,
    /// Services on the real node (iptables rules for ClusterIPs).
    pub kube_proxy: PathBuf,
    pub kwok: PathBuf,
    /// The NATS server with JetStream started beside the control plane ([`crate::nats`]).
    pub nats_server: PathBuf,
    /// Karpenter with its kwok cloud provider ([`crate::karpenter`]).
    pub karpenter: PathBuf,
}

impl Binaries {
    /// Where the binaries are (or will be) for the pinned versions.
    pub fn locate(paths: &Paths) -> Self {
        let k8s = paths.kubernetes_dir().join("bin");
        Binaries {
            etcd: paths.etcd_dir().join("bin").join("etcd"),
            kube_apiserver: k8s.join("kube-apiserver"),
            kube_controller_manager: k8s.join("kube-controller-manager"),
            kube_scheduler: k8s.join("kube-scheduler"),
            kubelet: k8s.join("kubelet"),
            kube_proxy: k8s.join("kube-proxy"),
            kwok: paths.kwok_dir().join("bin").join("kwok"),
            nats_server: crate::nats::server_binary(paths),
            karpenter: crate::karpenter::binary(paths),
        }
    }

    /// The control plane's binaries (the NATS server's build keeps its own check).
    fn all_present(&self) -> bool {
        [
            &self.etcd,
            &self.kube_apiserver,
            &self.kube_controller_manager,
            &self.kube_scheduler,
            &self.kubelet,
            &self.kube_proxy,
            &self.kwok,
        ]
        .iter()
        .all(|p| p.is_file())
    }
}

/// One wrapper module to build.
struct GoBuild {
    /// Name used for the log file and error messages.
    component: &'static str,
    dir: PathBuf,
    /// Files copied into the wrapper module (name, contents).
    sources: &'static [(&'static str, &'static str)],
    /// Packages passed to `go build`; every one must be a `main` package.
    packages: Vec<String>,
    /// Binary names `go build` produces (the last element of each package path).
    outputs: Vec<&'static str>,
    ldflags: String,
    /// What the build takes from a cold Go cache on this project's 2-core machine (measured), for
    /// the progress lines.
    typical: Duration,
}

/// Recorded in `bin/.recipe` after a build: a cache built with another recipe (other sources,
/// flags or versions) is rebuilt, not reused.
pub(crate) const RECIPE_FILE: &str = ".recipe";

const KUBERNETES_TOOLS: &str = include_str!("../gomod/kubernetes/tools.go");
const ETCD_MAIN: &str = include_str!("../gomod/etcd/main.go");
const KWOK_TOOLS: &str = include_str!("../gomod/kwok/tools.go");

/// Builds whatever is missing or stale in the cache and returns the binaries.
pub async fn ensure_built(paths: &Paths) -> Result<Binaries> {
    let binaries = Binaries::locate(paths);
    let builds = builds(paths);
    let stale: Vec<&GoBuild> = builds.iter().filter(|b| !b.is_current()).collect();
    let nats_stale = !crate::nats::is_built(paths);
    // Karpenter builds through its own recipe check (quick when cached), like helm.
    crate::progress::heartbeat(
        "building karpenter (its kwok provider)",
        Some(crate::karpenter::TYPICAL_BUILD),
        crate::karpenter::ensure_built(paths),
    )
    .await?;
    if stale.is_empty() && binaries.all_present() && !nats_stale {
        return Ok(binaries);
    }
    check_go().await?;
    let log_dir = paths.log_dir();
    std::fs::create_dir_all(&log_dir).map_err(Error::io("creating", &log_dir))?;
    let mut names: Vec<&str> = stale.iter().map(|b| b.component).collect();
    let mut total: Duration = stale.iter().map(|b| b.typical).sum();
    if nats_stale {
        names.push(crate::nats::COMPONENT);
        total += crate::nats::TYPICAL_BUILD;
    }
    info!(
        "building {} from Go modules, once per pinned version: usually about {} min in all on this project's 2-core machine",
        names.join(", "),
        total.as_secs().div_ceil(60)
    );
    let count = names.len();
    for (i, build) in stale.into_iter().enumerate() {
        let log = log_dir.join(format!("build-{}.log", build.component));
        let started = Instant::now();
        info!(
            component = build.component,
            log = %log.display(),
            "building {} ({}/{count}, usually about {} min)",
            build.component,
            i + 1,
            build.typical.as_secs().div_ceil(60)
        );
        let step = format!("building {}", build.component);
        crate::progress::heartbeat(&step, Some(build.typical), build.run(&log)).await?;
        info!(
            component = build.component,
            seconds = started.elapsed().as_secs(),
            "built"
        );
    }
    if nats_stale {
        crate::nats::ensure_built_as(paths, &format!("{count}/{count}, ")).await?;
    }
    Ok(binaries)
}

fn builds(paths: &Paths) -> [GoBuild; 3] {
    // Kubernetes' own build stamps the version this way; without it the binaries call themselves
    // v0.0.0-master, which clients show and some compare.
    let k8s = versions::KUBERNETES;
    let (major, minor) = {
        let mut parts = k8s.split('.');
        (parts.next().unwrap_or("1"), parts.next().unwrap_or("0"))
    };
    let mut kube_ldflags = String::from("-s -w");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        kube_ldflags.push_str(&format!(
            " -X {pkg}.gitVersion=v{k8s} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
        ));
    }
    [
        GoBuild {
            component: "kubernetes",
            dir: paths.kubernetes_dir(),
            sources: &[("tools.go", KUBERNETES_TOOLS)],
            packages: [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
            ]
            .iter()
            .map(|c| format!("k8s.io/kubernetes/cmd/{c}"))
            .collect(),
            outputs: vec![
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
            ],
            ldflags: kube_ldflags,
            typical: Duration::from_secs(11 * 60),
        },
        GoBuild {
            component: "etcd",
            dir: paths.etcd_dir(),
            sources: &[("main.go", ETCD_MAIN)],
            packages: vec![".".to_string()],
            outputs: vec!["etcd"],
            ldflags: "-s -w".into(),
            typical: Duration::from_secs(60),
        },
        GoBuild {
            component: "kwok",
            dir: paths.kwok_dir(),
            sources: &[("tools.go", KWOK_TOOLS)],
            packages: vec!["sigs.k8s.io/kwok/cmd/kwok".to_string()],
            outputs: vec!["kwok"],
            ldflags: "-s -w".into(),
            typical: Duration::from_secs(3 * 60),
        },
    ]
}

/// Fails with a clear message when Go is not installed.
pub async fn check_go() -> Result<()> {
    match Command::new("go").arg("version").output().await {
        Ok(out) if out.status.success() => Ok(()),
        Ok(_) | Err(_) => Err(Error::GoMissing(versions::GO_DIRECTIVE)),
    }
}

impl GoBuild {
    /// Everything that decides the binaries; the go.mod is derived from the versions in it.
    fn recipe(&self) -> String {
        let mut recipe = format!(
            "kubernetes={} etcd={} kwok={} go={}\nldflags={}\npackages={}\n",
            versions::KUBERNETES,
            versions::ETCD,
            versions::KWOK,
            versions::GO_DIRECTIVE,
            self.ldflags,
            self.packages.join(" ")
        );
        for (name, contents) in self.sources {
            recipe.push_str(&format!("--- {name}\n{contents}\n"));
        }
        recipe
    }

    fn is_current(&self) -> bool {
        let bin = self.dir.join("bin");
        self.outputs.iter().all(|o| bin.join(o).is_file())
            && std::fs::read_to_string(bin.join(RECIPE_FILE)).is_ok_and(|r| r == self.recipe())
    }

    async fn run(&self, log: &Path) -> Result<()> {
        let src = self.dir.join("src");
        std::fs::create_dir_all(&src).map_err(Error::io("creating", &src))?;
        for (name, contents) in self.sources {
            let path = src.join(name);
            std::fs::write(&path, contents).map_err(Error::io("writing", &path))?;
        }
        let go_mod = match self.component {
            "kubernetes" => kubernetes_go_mod(log).await?,
            "etcd" => simple_go_mod("etcd", "go.etcd.io/etcd/server/v3", versions::ETCD),
            _ => simple_go_mod("kwok", "sigs.k8s.io/kwok", versions::KWOK),
        };
        let go_mod_path = src.join("go.mod");
        std::fs::write(&go_mod_path, go_mod).map_err(Error::io("writing", &go_mod_path))?;
        // A stale go.sum from an older version only adds noise; tidy writes a fresh one.
        let _ = std::fs::remove_file(src.join("go.sum"));

        logs::truncate(log)?;
        self.go(&src, log, &["mod", "tidy"]).await?;

        let staging = self.dir.join("bin.partial");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(Error::io("creating", &staging))?;
        let out = format!("{}/", staging.display());
        let ldflags = format!("-ldflags={}", self.ldflags);
        let mut args = vec!["build", ldflags.as_str(), "-o", out.as_str()];
        args.extend(self.packages.iter().map(String::as_str));
        self.go(&src, log, &args).await?;

        let recipe = staging.join(RECIPE_FILE);
        std::fs::write(&recipe, self.recipe()).map_err(Error::io("writing", &recipe))?;
        let bin = self.dir.join("bin");
        let _ = std::fs::remove_dir_all(&bin);
        std::fs::rename(&staging, &bin).map_err(Error::io("installing", &bin))?;
        for output in &self.outputs {
            if !bin.join(output).is_file() {
                return Err(self.failed(log, format!("go build produced no {output}")));
            }
        }
        Ok(())
    }

    async fn go(&self, dir: &Path, log: &Path, args: &[&str]) -> Result<()> {
        let status = go_status(dir, log, args).await?;
        if status.success() {
            Ok(())
        } else {
            Err(self.failed(log, format!("`go {}` exited with {status}", args.join(" "))))
        }
    }

    fn failed(&self, log: &Path, message: String) -> Error {
        Error::Build {
            component: self.component.to_string(),
            message,
            log: log.to_path_buf(),
            tail: logs::tail(log, 40),
        }
    }
}

fn simple_go_mod(name: &str, module: &str, version: &str) -> String {
    format!(
        "module lmi.dev/e2e/{name}\n\ngo {}\n\nrequire {module} v{version}\n",
        versions::GO_DIRECTIVE
    )
}

/// k8s.io/kubernetes requires its staging modules at `v0.0.0` and replaces them with local
/// directories, which a dependent module cannot see. So the wrapper replaces each of them with
/// its published tag; the list is read from the kubernetes go.mod so that it follows new versions.
async fn kubernetes_go_mod(log: &Path) -> Result<String> {
    let failed = |message: String| Error::Build {
        component: "kubernetes".into(),
        message,
        log: log.to_path_buf(),
        tail: logs::tail(log, 40),
    };
    let module = crate::gomod::download("k8s.io/kubernetes", versions::KUBERNETES)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let upstream =
        std::fs::read_to_string(&module.go_mod).map_err(Error::io("reading", &module.go_mod))?;
    let staging = staging_modules(&upstream);
    if staging.is_empty() {
        return Err(failed(format!(
            "no staging replace directives in {}",
            module.go_mod.display()
        )));
    }
    Ok(render_kubernetes_go_mod(&staging))
}

/// The staging modules named in `replace k8s.io/x => ./staging/src/k8s.io/x` lines.
pub fn staging_modules(go_mod: &str) -> Vec<String> {
    go_mod
        .lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches("replace").trim();
            let (from, to) = line.split_once("=>")?;
            let from = from.trim();
            to.trim()
                .starts_with("./staging/")
                .then(|| from.to_string())
        })
        .collect()
}

fn render_kubernetes_go_mod(staging: &[String]) -> String {
    let staging_version = versions::staging_version(versions::KUBERNETES);
    let mut out = format!(
        "module lmi.dev/e2e/kubernetes\n\ngo {}\n\nrequire k8s.io/kubernetes v{}\n\nreplace (\n",
        versions::GO_DIRECTIVE,
        versions::KUBERNETES
    );
    for module in staging {
        out.push_str(&format!("\t{module} => {module} v{staging_version}\n"));
    }
    out.push_str(")\n");
    out
}

/// One Go command built from its module through a wrapper module (helm, nats-server).
pub(crate) struct ToolBuild<'a> {
    /// The name in logs, errors and the build log's file name.
    pub name: &'a str,
    /// The binary `go build` makes (the last element of the package path).
    pub binary: &'a str,
    /// The wrapper's tools.go, which imports the command's package.
    pub tools_go: &'a str,
    pub go_mod: String,
    pub ldflags: String,
    pub package: String,
    /// Go build tags (`-tags`), empty for none.
    pub tags: &'a str,
    /// Written beside the binary: a cache built with another recipe is rebuilt.
    pub recipe: String,
}

/// `tool`'s binary in `dir/bin`, built unless the cache already holds it with the same recipe.
/// Concurrent callers (other test binaries, `lmi-dev up`) wait on a lock file instead of building
/// twice.
pub(crate) async fn ensure_tool(
    paths: &Paths,
    tool: &ToolBuild<'_>,
    dir: &Path,
) -> Result<PathBuf> {
    let bin = dir.join("bin");
    let binary = bin.join(tool.binary);
    let current = || {
        binary.is_file()
            && std::fs::read_to_string(bin.join(RECIPE_FILE)).is_ok_and(|r| r == tool.recipe)
    };
    if current() {
        return Ok(binary);
    }
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    let lock_path = dir.join("lock");
    let lock = std::fs::File::create(&lock_path).map_err(Error::io("creating", &lock_path))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .map_err(|e| Error::Other(format!("waiting for the {} build lock: {e}", tool.name)))?
        .map_err(Error::io("locking", &lock_path))?;
    if !current() {
        check_go().await?;
        let log_dir = paths.log_dir();
        std::fs::create_dir_all(&log_dir).map_err(Error::io("creating", &log_dir))?;
        let log = log_dir.join(format!("build-{}.log", tool.name));
        let started = Instant::now();
        info!(log = %log.display(), package = %tool.package, "building {} from its Go module (slow the first time)", tool.name);
        build_tool(tool, dir, &log).await?;
        info!(seconds = started.elapsed().as_secs(), "built {}", tool.name);
    }
    drop(lock);
    Ok(binary)
}

/// Builds `tool` into `dir/bin`: the wrapper module in `dir/src`, `go mod tidy`, `go build` into
/// `dir/bin.partial`, then renamed, so an interrupted build never leaves a `bin/` that looks
/// complete (the recipe is written only once the binary is there).
pub(crate) async fn build_tool(tool: &ToolBuild<'_>, dir: &Path, log: &Path) -> Result<()> {
    let failed = |message: String| logs::build_failed(tool.name, log, message);
    let go = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let status = go_status(&dir.join("src"), log, &args).await?;
        if status.success() {
            Ok(())
        } else {
            Err(failed(format!(
                "`go {}` exited with {status}",
                args.join(" ")
            )))
        }
    };
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(Error::io("creating", &src))?;
    for (name, contents) in [
        ("tools.go", tool.tools_go),
        ("go.mod", tool.go_mod.as_str()),
    ] {
        let path = src.join(name);
        std::fs::write(&path, contents).map_err(Error::io("writing", &path))?;
    }
    // A go.sum of an older version only adds noise; tidy writes a fresh one.
    let _ = std::fs::remove_file(src.join("go.sum"));
    logs::truncate(log)?;
    go(vec!["mod".into(), "tidy".into()]).await?;
    let staging = dir.join("bin.partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(Error::io("creating", &staging))?;
    go(vec![
        "build".into(),
        format!("-ldflags={}", tool.ldflags),
        format!("-tags={}", tool.tags),
        "-o".into(),
        format!("{}/", staging.display()),
        tool.package.clone(),
    ])
    .await?;
    if !staging.join(tool.binary).is_file() {
        return Err(failed(format!("go build produced no {}", tool.binary)));
    }
    let recipe_path = staging.join(RECIPE_FILE);
    std::fs::write(&recipe_path, &tool.recipe).map_err(Error::io("writing", &recipe_path))?;
    let bin = dir.join("bin");
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::rename(&staging, &bin).map_err(Error::io("installing", &bin))
}

/// Runs `go ARGS` in `dir`, its output appended to `log`: static, trimmed binaries, and no
/// toolchain download. The exit status is the caller's to judge.
pub(crate) async fn go_status(
    dir: &Path,
    log: &Path,
    args: &[&str],
) -> Result<std::process::ExitStatus> {
    logs::append_line(log, &format!("$ go {}", args.join(" ")))?;
    Command::new("go")
        .args(args)
        .current_dir(dir)
        // -trimpath keeps paths of this machine out of the binaries; GOTOOLCHAIN=local makes a
        // too-old Go fail clearly instead of trying to download a newer toolchain.
        .env("GOFLAGS", "-trimpath -buildvcs=false")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .stdin(std::process::Stdio::null())
        .stdout(logs::append(log)?)
        .stderr(logs::append(log)?)
        .status()
        .await
        .map_err(|_| Error::GoMissing(versions::GO_DIRECTIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_staging_replaces_from_the_kubernetes_go_mod() {
        let go_mod = "module k8s.io/kubernetes\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n)\nreplace example.com/x => example.com/y v1.0.0\n";
        assert_eq!(
            staging_modules(go_mod),
            vec!["k8s.io/api", "k8s.io/client-go"]
        );
        let rendered = render_kubernetes_go_mod(&staging_modules(go_mod));
        assert!(
            rendered.contains("\tk8s.io/api => k8s.io/api v0."),
            "{rendered}"
        );
        assert!(rendered.contains(&format!(
            "require k8s.io/kubernetes v{}",
            versions::KUBERNETES
        )));
    }
}
