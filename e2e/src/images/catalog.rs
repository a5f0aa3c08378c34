//! Which images exist, what goes into each layer, and how each image runs.
//!
//! | image | layers |
//! |---|---|
//! | [`PAUSE_IMAGE`] | `/pause`, compiled from Kubernetes' own `build/pause/linux/pause.c` |
//! | [`SIDECAR_IMAGE`], [`OPERATOR_IMAGE`], [`ROUTER_IMAGE`] | Debian base + `/usr/local/bin/<program>` |
//! | [`PYTHON_FUNCTION_IMAGE`] | Debian base + awslambdaric in `/opt/lambda/python` + `/var/task/app.py` |
//! | [`RUST_FUNCTION_IMAGE`] | Debian base + `/var/runtime/bootstrap` (router/examples/fixture_fn.rs) |
//!
//! Files in the layers above the base are world readable (and executables world executable):
//! the pods run as uid 993 with a read-only root file system.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::oci::RunConfig;
use super::{ImageSpec, Layer, LayerCache, base, file_fingerprint, run_logged};
use crate::error::{Error, Result};
use crate::versions;

/// The sandbox ("pause") image for the node's containerd (`sandbox_image`).
pub const PAUSE_IMAGE: &str = "localhost/lmi/pause:3.10";
/// The chart's image names under the registry `localhost/lmi` with the tag `dev`
/// (`helm install --set image.registry=localhost/lmi,image.tag=dev`).
pub const LOCAL_REGISTRY: &str = "localhost/lmi";
pub const LOCAL_TAG: &str = "dev";
/// The EE sidecar (`lmi-sidecar`): Runtime API for the function, invoke endpoint for the router.
pub const SIDECAR_IMAGE: &str = "localhost/lmi/lmi-sidecar:dev";
/// The operator (`lmi-operator`), for running it in the cluster with the chart.
pub const OPERATOR_IMAGE: &str = "localhost/lmi/lmi-operator:dev";
/// The router (`lmi-router`), for running it in the cluster with the chart.
pub const ROUTER_IMAGE: &str = "localhost/lmi/lmi-router:dev";
/// examples/functions/hello-python on the real Python runtime client (awslambdaric).
pub const PYTHON_FUNCTION_IMAGE: &str = "localhost/lmi/hello-python:dev";
/// router/examples/fixture_fn.rs on the real Rust runtime client (lambda_runtime).
pub const RUST_FUNCTION_IMAGE: &str = "localhost/lmi/hello-rust:dev";

/// nats-server (`versions::NATS_SERVER`, the one the local cluster runs), for the chart's own
/// NATS (`nats.install`) on the real nodes.
pub const NATS_IMAGE: &str = "localhost/lmi/nats:dev";

/// The Python runtime interface client; its cp311 manylinux wheel needs no compiler.
pub const AWSLAMBDARIC: &str = "awslambdaric==4.2.2";

/// Where the Python function's source lives in the repository.
pub const PYTHON_FUNCTION_SOURCE: &str = "examples/functions/hello-python/app.py";

/// Debian's default search path; images without a PATH get none from containerd's CRI.
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `cargo build` of the programs (every binary of the workspace) and the Rust example function in
/// `workspace_root`; returns cargo's target directory (honours `CARGO_TARGET_DIR`).
pub async fn build_binaries(workspace_root: &Path, log: &Path) -> Result<PathBuf> {
    let mut build = Command::new("cargo");
    build
        // The same packages and targets as `scripts/run.sh` builds: cargo unifies features over
        // what one command builds, so any other set would rebuild (and relink) the binaries the
        // main job runs every time the two alternate.
        .args([
            "build",
            "--locked",
            "-p",
            "lmi-operator",
            "-p",
            "lmi-router",
            "-p",
            "lmi-e2e",
            "--bins",
            "--example",
            "fixture_fn",
        ])
        .current_dir(workspace_root);
    run_logged("binaries (cargo build)", log, &mut build).await?;
    target_directory(workspace_root).await
}

/// The product's images and the programs they carry.
pub const PRODUCT_IMAGES: [(&str, &str); 3] = [
    (SIDECAR_IMAGE, "lmi-sidecar"),
    (OPERATOR_IMAGE, "lmi-operator"),
    (ROUTER_IMAGE, "lmi-router"),
];

/// `cargo build --release` of the programs of `images` (some of [`PRODUCT_IMAGES`]: for images
/// meant for a registry); returns cargo's target directory.
pub async fn build_release_binaries(
    workspace_root: &Path,
    log: &Path,
    images: &[(&str, &str)],
) -> Result<PathBuf> {
    let mut build = Command::new("cargo");
    build.args(["build", "--release", "--locked"]);
    // The operator's program is in its own package; the router's and the sidecar's share one.
    let packages: std::collections::BTreeSet<&str> = images
        .iter()
        .map(|(_, program)| {
            if *program == "lmi-operator" {
                "lmi-operator"
            } else {
                "lmi-router"
            }
        })
        .collect();
    for package in packages {
        build.args(["-p", package]);
    }
    for (_, program) in images {
        build.args(["--bin", program]);
    }
    build.current_dir(workspace_root);
    run_logged("release binaries (cargo build --release)", log, &mut build).await?;
    target_directory(workspace_root).await
}

/// cargo's target directory for `workspace_root` (honours `CARGO_TARGET_DIR`).
async fn target_directory(workspace_root: &Path) -> Result<PathBuf> {
    let out = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(workspace_root)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Other(format!("running cargo metadata: {e}")))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    meta.get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| Error::Other("cargo metadata printed no target_directory".into()))
}

/// Every image, with its layers built or taken from the cache.
pub async fn specs(
    cache: &LayerCache,
    workspace_root: &Path,
    target_dir: &Path,
    nats_server: &Path,
    log: &Path,
) -> Result<Vec<ImageSpec>> {
    let (base, _) = base::ensure(cache, log).await?;
    let debian_env = |extra: &[&str]| -> Vec<String> {
        std::iter::once(PATH_ENV)
            .chain(extra.iter().copied())
            .map(String::from)
            .collect()
    };

    let pause = pause_layer(cache, log).await?;
    let programs = product_specs(
        cache,
        log,
        &base,
        &target_dir.join("debug"),
        &PRODUCT_IMAGES,
    )
    .await?;
    let rust_fn = file_layer(
        cache,
        log,
        &target_dir.join("debug").join("examples").join("fixture_fn"),
        "var/runtime/bootstrap",
    )
    .await?;
    let nats = file_layer(cache, log, nats_server, "usr/local/bin/nats-server").await?;
    let python_runtime = python_runtime_layer(cache, log).await?;
    let python_app = python_app_layer(cache, workspace_root, log).await?;

    let mut images = vec![
        ImageSpec {
            name: PAUSE_IMAGE,
            // As Kubernetes' own pause image: nobody, from scratch.
            run: RunConfig {
                user: Some("65535:65535".into()),
                entrypoint: vec!["/pause".into()],
                ..RunConfig::default()
            },
            layers: vec![pause],
        },
        ImageSpec {
            name: PYTHON_FUNCTION_IMAGE,
            // As router/tests/python_clients.rs runs it: `python -m awslambdaric module.handler`
            // in the handler's directory. AWS_LAMBDA_MAX_CONCURRENCY (from the pod spec) turns on
            // its multi-process mode; no .pyc writes on the read-only root.
            run: RunConfig {
                env: debian_env(&[
                    "LANG=C.UTF-8",
                    "PYTHONPATH=/opt/lambda/python:/var/task",
                    "PYTHONDONTWRITEBYTECODE=1",
                ]),
                entrypoint: vec![
                    "/usr/bin/python3".into(),
                    "-m".into(),
                    "awslambdaric".into(),
                ],
                cmd: vec!["app.handler".into()],
                working_dir: Some("/var/task".into()),
                ..RunConfig::default()
            },
            layers: vec![base.clone(), python_runtime, python_app],
        },
        ImageSpec {
            name: RUST_FUNCTION_IMAGE,
            run: RunConfig {
                env: debian_env(&[]),
                entrypoint: vec!["/var/runtime/bootstrap".into()],
                ..RunConfig::default()
            },
            layers: vec![base.clone(), rust_fn],
        },
        ImageSpec {
            name: NATS_IMAGE,
            run: RunConfig {
                env: debian_env(&[]),
                entrypoint: vec!["/usr/local/bin/nats-server".into()],
                ..RunConfig::default()
            },
            layers: vec![base, nats],
        },
    ];
    images.extend(programs);
    Ok(images)
}

/// The product's images ([`PRODUCT_IMAGES`]): `base` and one program from `bin_dir` (cargo's
/// `debug` or `release` folder) at `/usr/local/bin`, its entrypoint.
pub async fn product_specs(
    cache: &LayerCache,
    log: &Path,
    base: &Layer,
    bin_dir: &Path,
    images: &[(&'static str, &'static str)],
) -> Result<Vec<ImageSpec>> {
    let mut specs = Vec::new();
    for &(image, program) in images {
        let dest = format!("usr/local/bin/{program}");
        let layer = file_layer(cache, log, &bin_dir.join(program), &dest).await?;
        specs.push(ImageSpec {
            name: image,
            run: RunConfig {
                env: vec![PATH_ENV.to_string()],
                entrypoint: vec![format!("/{dest}")],
                ..RunConfig::default()
            },
            layers: vec![base.clone(), layer],
        });
    }
    Ok(specs)
}

/// One executable at `dest`, keyed by the source's fingerprint (not its bytes: hashing a debug
/// binary of 175 MB on every run would cost more than the rest of a cached run).
async fn file_layer(cache: &LayerCache, log: &Path, src: &Path, dest: &str) -> Result<Layer> {
    let recipe = format!("{} -> {dest} 0755 stripped", file_fingerprint(src)?);
    let (layer, _) = cache
        .get_or_build(dest, &recipe, true, log, async |root: &Path| {
            let dest = root.join(dest);
            install(src, &dest, 0o755)?;
            strip_debug_info(&dest)
        })
        .await?;
    Ok(layer)
}

/// Debug builds carry ~90% debug info; an EE has no debugger, and every image import and pod
/// start reads the whole file. (Symbols stay, so a panic's backtrace still names functions.)
fn strip_debug_info(binary: &Path) -> Result<()> {
    let status = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg(binary)
        .status()
        .map_err(Error::io("running strip on", binary))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "strip --strip-debug {} exited with {status}",
            binary.display()
        )))
    }
}

fn install(src: &Path, dest: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
    }
    std::fs::copy(src, dest).map_err(Error::io("copying", src))?;
    set_mode(dest, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io("setting the mode of", path))
}

/// The pause image's version, from the `TAG ?= 3.10.2` line of Kubernetes' build/pause/Makefile.
pub fn pause_tag(makefile: &str) -> Option<&str> {
    makefile.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("TAG")?.trim_start();
        let tag = rest.strip_prefix("?=")?.trim();
        (!tag.is_empty()).then_some(tag)
    })
}

/// `/pause`, built as Kubernetes builds it (`gcc -Os -Wall -static -DVERSION=v<tag>-<rev>`), with
/// this machine's gcc and static glibc instead of their cross-compiler image; no `-Werror`, so a
/// newer gcc's new warnings do not fail the build.
async fn pause_layer(cache: &LayerCache, log: &Path) -> Result<Layer> {
    // Kubernetes' source of the pause binary is in its module.
    let module = crate::gomod::download("k8s.io/kubernetes", versions::KUBERNETES).await?;
    let dir = module.dir.join("build").join("pause");
    let source_path = dir.join("linux").join("pause.c");
    let source =
        std::fs::read_to_string(&source_path).map_err(Error::io("reading", &source_path))?;
    let makefile_path = dir.join("Makefile");
    let makefile =
        std::fs::read_to_string(&makefile_path).map_err(Error::io("reading", &makefile_path))?;
    let version = format!("v{}-lmi", pause_tag(&makefile).unwrap_or("3.10"));
    let flags = [
        "-Os".to_string(),
        "-Wall".into(),
        "-static".into(),
        format!("-DVERSION={version}"),
    ];
    let recipe = format!("gcc {}\n--- pause.c\n{source}", flags.join(" "));
    let (layer, _) = cache
        .get_or_build("pause", &recipe, true, log, async |root: &Path| {
            let out = root.join("pause");
            let mut gcc = Command::new("gcc");
            gcc.args(&flags).arg("-o").arg(&out).arg(&source_path);
            run_logged("pause (gcc)", log, &mut gcc).await?;
            set_mode(&out, 0o755)
        })
        .await?;
    Ok(layer)
}

/// awslambdaric and its dependencies, as wheels for CPython 3.11 on manylinux x86_64 (what
/// bookworm's python3 runs), installed by the host's pip into `/opt/lambda/python`.
async fn python_runtime_layer(cache: &LayerCache, log: &Path) -> Result<Layer> {
    let host_python = Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Other(format!("running python3: {e}")))?;
    let host_python = String::from_utf8_lossy(&host_python.stdout)
        .trim()
        .to_string();
    let pip_args = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--only-binary=:all:",
        "--platform",
        "manylinux2014_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        AWSLAMBDARIC,
    ];
    // Byte-compiled ahead, hash-based (mtimes are 0 in the layer) and only by a 3.11, whose .pyc
    // format is the image's.
    let compile = host_python == "3.11";
    let recipe = format!(
        "python3 {} --target /opt/lambda/python\ncompile={compile}",
        pip_args.join(" ")
    );
    let (layer, _) = cache
        .get_or_build("python-runtime", &recipe, true, log, async |root: &Path| {
            let target = root.join("opt").join("lambda").join("python");
            let mut pip = Command::new("python3");
            pip.args(pip_args).arg("--target").arg(&target);
            run_logged("python runtime (pip install)", log, &mut pip).await?;
            if compile {
                let mut compileall = Command::new("python3");
                compileall
                    .args([
                        "-m",
                        "compileall",
                        "-q",
                        "--invalidation-mode",
                        "unchecked-hash",
                    ])
                    .arg("-d")
                    .arg("/opt/lambda/python")
                    .arg(&target);
                run_logged("python runtime (compileall)", log, &mut compileall).await?;
            }
            Ok(())
        })
        .await?;
    Ok(layer)
}

/// The function's code at `/var/task/app.py`, keyed by its bytes.
async fn python_app_layer(cache: &LayerCache, workspace_root: &Path, log: &Path) -> Result<Layer> {
    let src = workspace_root.join(PYTHON_FUNCTION_SOURCE);
    let code = std::fs::read(&src).map_err(Error::io("reading", &src))?;
    let recipe = format!("var/task/app.py 0644 {}", super::oci::Digest::of(&code));
    let (layer, _) = cache
        .get_or_build("python-app", &recipe, true, log, async |root: &Path| {
            install(&src, &root.join("var").join("task").join("app.py"), 0o644)
        })
        .await?;
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pause_tag_from_the_makefile() {
        let makefile = "REGISTRY ?= staging-k8s.gcr.io\nIMAGE = $(REGISTRY)/pause\nTAG ?= 3.10.2\nREV = $(shell git describe)\n";
        assert_eq!(pause_tag(makefile), Some("3.10.2"));
        assert_eq!(pause_tag("TAGS = x\n"), None);
    }

    #[test]
    fn image_names_are_fully_qualified() {
        for name in [
            PAUSE_IMAGE,
            SIDECAR_IMAGE,
            PYTHON_FUNCTION_IMAGE,
            RUST_FUNCTION_IMAGE,
        ] {
            // CRI normalises a bare `lmi/x` to docker.io/lmi/x: a registry host keeps it local.
            assert!(name.starts_with("localhost/lmi/"), "{name}");
            assert!(
                name.rsplit('/').next().is_some_and(|n| n.contains(':')),
                "{name}"
            );
        }
    }
}
