//! Container images for the local node, built without Docker, buildah or a registry: each layer is
//! a directory packed by GNU tar with deterministic flags, the OCI blobs are written by
//! [`oci`], and each image becomes an OCI layout archive that `ctr images import` loads into the
//! node's containerd (`k8s.io` namespace, where the kubelet's CRI looks), to be run with
//! `imagePullPolicy: Never` or `IfNotPresent`.
//!
//! Everything lives under `$CACHE/images` and is content addressed, so a second run with unchanged
//! inputs only stats a few files:
//! - `layers/<key>.tar` + `.digest`: one layer, keyed by a hash of what went into it (the Debian
//!   recipe; the paths, sizes and mtimes of copied binaries; the bytes of small files);
//! - `archives/<image>-<key>.tar`: one image, keyed by its name and manifest digest;
//! - `tmp/`: work directories, renamed into place only when complete, so an interrupted build
//!   never leaves a cache entry that looks finished.
//!
//! Usage: `let images = ensure_images(&paths, workspace_root).await?;` then
//! `import_all(&images, &node.containerd_address()).await?` for each of [`crate::node::NODES`].

pub mod base;
pub mod catalog;
pub mod oci;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Instant, UNIX_EPOCH};

use tokio::process::Command;
use tracing::info;

use crate::error::{Error, Result};
use crate::logs;
use crate::paths::Paths;
use oci::{Descriptor, Digest};

pub use catalog::{
    LOCAL_REGISTRY, LOCAL_TAG, OPERATOR_IMAGE, PAUSE_IMAGE, PYTHON_FUNCTION_IMAGE, ROUTER_IMAGE,
    RUST_FUNCTION_IMAGE, SIDECAR_IMAGE,
};

/// The containerd namespace the kubelet's CRI plugin uses.
pub const CONTAINERD_NAMESPACE: &str = "k8s.io";

/// One image archive, ready for [`import`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// Full reference, e.g. [`SIDECAR_IMAGE`].
    pub name: String,
    /// The OCI layout archive (`ctr images import` input).
    pub archive: PathBuf,
    /// Digest of the image manifest: what containerd shows for the image once imported.
    pub manifest_digest: String,
    /// False when the archive from an earlier run was reused unchanged.
    pub built: bool,
}

/// `$CACHE/images`.
pub fn images_dir(paths: &Paths) -> PathBuf {
    paths.root().join("images")
}

/// Log of every command run for images.
pub fn log_file(paths: &Paths) -> PathBuf {
    paths.log_dir().join("images.log")
}

/// Builds the Rust binaries the images carry (`cargo build --locked ... --bins --example fixture_fn`
/// in `workspace_root`, [`catalog::build_binaries`]), then every image of the
/// [`catalog`] whose archive is missing or stale, and returns all of them.
pub async fn ensure_images(paths: &Paths, workspace_root: &Path) -> Result<Vec<BuiltImage>> {
    let dir = images_dir(paths);
    let log_dir = paths.log_dir();
    std::fs::create_dir_all(&log_dir).map_err(Error::io("creating", &log_dir))?;
    let log = log_file(paths);
    logs::truncate(&log)?;
    let cache = LayerCache::open(&dir)?;

    let started = Instant::now();
    let target_dir = catalog::build_binaries(workspace_root, &log).await?;
    info!(
        seconds = started.elapsed().as_secs_f32(),
        "cargo binaries for the images are ready"
    );

    // The chart's NATS runs on the nodes from the same server the local cluster runs.
    let nats_server = crate::nats::ensure_built(paths).await?;
    let specs = catalog::specs(&cache, workspace_root, &target_dir, &nats_server, &log).await?;
    let archives = dir.join("archives");
    std::fs::create_dir_all(&archives).map_err(Error::io("creating", &archives))?;
    let mut keep: HashSet<PathBuf> = HashSet::new();
    for layer in specs.iter().flat_map(|s| &s.layers) {
        keep.insert(layer.path.clone());
        keep.insert(layer.path.with_extension("digest"));
    }
    let mut built = Vec::new();
    for spec in specs {
        let image = write_archive(&cache, &archives, &spec, &log).await?;
        keep.insert(image.archive.clone());
        info!(
            image = %image.name,
            digest = %image.manifest_digest,
            archive = %image.archive.display(),
            "{}",
            if image.built { "built" } else { "reused" }
        );
        built.push(image);
    }
    // Each rebuilt binary leaves a layer and an archive of hundreds of MB behind: keep only what
    // this run uses. (A concurrent run from another checkout may lose an entry it would have
    // reused; it then builds it again.)
    for dir in [cache.layers.as_path(), archives.as_path()] {
        prune(dir, &keep);
    }
    Ok(built)
}

/// A product image written for a registry by [`export_product_images`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedImage {
    /// `lmi-operator`, `lmi-router` or `lmi-sidecar`: the repository name the chart expects
    /// under `image.registry`.
    pub repository: String,
    /// `<out>/<repository>.tar`: an OCI layout archive of one linux/amd64 image, which
    /// `skopeo copy oci-archive:FILE docker://REGISTRY/REPOSITORY:TAG` pushes.
    pub archive: PathBuf,
    pub manifest_digest: String,
}

/// Writes the product's images (operator, router, sidecar) into `out` as OCI layout archives
/// that registry tools push as they are: the same recipe as the local cluster's images (a
/// minimal Debian base, the stripped program), from a `--release` build when `release`.
pub async fn export_product_images(
    paths: &Paths,
    workspace_root: &Path,
    out: &Path,
    release: bool,
) -> Result<Vec<ExportedImage>> {
    let log = log_file(paths);
    std::fs::create_dir_all(paths.log_dir()).map_err(Error::io("creating", paths.log_dir()))?;
    let (target_dir, profile) = if release {
        (
            catalog::build_release_binaries(workspace_root, &log, &catalog::PRODUCT_IMAGES).await?,
            "release",
        )
    } else {
        (
            catalog::build_binaries(workspace_root, &log).await?,
            "debug",
        )
    };
    write_product_archives(paths, &target_dir.join(profile), out).await
}

/// [`export_product_images`] of programs already built in `bin_dir` (cargo's `debug` or
/// `release` folder).
pub async fn write_product_archives(
    paths: &Paths,
    bin_dir: &Path,
    out: &Path,
) -> Result<Vec<ExportedImage>> {
    let dir = images_dir(paths);
    let log = log_file(paths);
    std::fs::create_dir_all(out).map_err(Error::io("creating", out))?;
    let cache = LayerCache::open(&dir)?;
    let (base, _) = base::ensure(&cache, &log).await?;
    let specs =
        catalog::product_specs(&cache, &log, &base, bin_dir, &catalog::PRODUCT_IMAGES).await?;
    let archives = dir.join("archives");
    std::fs::create_dir_all(&archives).map_err(Error::io("creating", &archives))?;
    let mut exported = Vec::new();
    for (spec, (_, repository)) in specs.iter().zip(catalog::PRODUCT_IMAGES) {
        let image = write_archive(&cache, &archives, spec, &log).await?;
        let archive = out.join(format!("{repository}.tar"));
        let _ = std::fs::remove_file(&archive);
        std::fs::hard_link(&image.archive, &archive)
            .or_else(|_| std::fs::copy(&image.archive, &archive).map(|_| ()))
            .map_err(Error::io("writing", &archive))?;
        exported.push(ExportedImage {
            repository: repository.to_string(),
            archive,
            manifest_digest: image.manifest_digest,
        });
    }
    Ok(exported)
}

/// The sidecar's image from a `--release` build (only its program is built), under the local
/// image's name [`SIDECAR_IMAGE`], ready for [`import`].
pub async fn release_sidecar_image(paths: &Paths, workspace_root: &Path) -> Result<BuiltImage> {
    let log = log_file(paths);
    std::fs::create_dir_all(paths.log_dir()).map_err(Error::io("creating", paths.log_dir()))?;
    let images = [(SIDECAR_IMAGE, "lmi-sidecar")];
    let target_dir = catalog::build_release_binaries(workspace_root, &log, &images).await?;
    let dir = images_dir(paths);
    let cache = LayerCache::open(&dir)?;
    let (base, _) = base::ensure(&cache, &log).await?;
    let specs =
        catalog::product_specs(&cache, &log, &base, &target_dir.join("release"), &images).await?;
    let archives = dir.join("archives");
    std::fs::create_dir_all(&archives).map_err(Error::io("creating", &archives))?;
    let spec = specs
        .first()
        .ok_or_else(|| Error::Other("no image spec for the sidecar".into()))?;
    write_archive(&cache, &archives, spec, &log).await
}

fn prune(dir: &Path, keep: &HashSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_file()) && !keep.contains(&path) {
            tracing::debug!(path = %path.display(), "removing unused image cache entry");
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Imports every image (see [`import`]).
pub async fn import_all(images: &[BuiltImage], containerd_address: &Path) -> Result<()> {
    for image in images {
        let imported = import(image, containerd_address).await?;
        info!(
            image = %image.name,
            "{}",
            if imported { "imported into containerd" } else { "already in containerd" }
        );
    }
    Ok(())
}

/// `ctr --address <sock> -n k8s.io images import <archive>`, skipped (returning false) when
/// containerd already has the image under its name with the same manifest digest.
pub async fn import(image: &BuiltImage, containerd_address: &Path) -> Result<bool> {
    let listed = ctr(containerd_address, &["images", "ls"]).await?;
    if image_listed(&listed, &image.name, &image.manifest_digest) {
        return Ok(false);
    }
    let archive = image.archive.display().to_string();
    ctr(containerd_address, &["images", "import", &archive]).await?;
    let listed = ctr(containerd_address, &["images", "ls"]).await?;
    if image_listed(&listed, &image.name, &image.manifest_digest) {
        Ok(true)
    } else {
        Err(Error::Other(format!(
            "`ctr images import {archive}` succeeded but containerd lists no {} at {}",
            image.name, image.manifest_digest
        )))
    }
}

async fn ctr(address: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(address)
        .args(["-n", CONTAINERD_NAMESPACE])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Other(format!("running ctr (is containerd installed?): {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Other(format!(
            "`ctr --address {} -n {CONTAINERD_NAMESPACE} {}` exited with {}: {}",
            address.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether `ctr images ls` output (columns REF TYPE DIGEST ...) has `name` at `digest`.
pub fn image_listed(ctr_images_ls: &str, name: &str, digest: &str) -> bool {
    ctr_images_ls.lines().skip(1).any(|line| {
        let mut cols = line.split_whitespace();
        cols.next() == Some(name) && cols.nth(1) == Some(digest)
    })
}

/// One image to write: its name, run settings and layers (bottom first).
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub name: &'static str,
    pub run: oci::RunConfig,
    pub layers: Vec<Layer>,
}

/// A packed layer in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

impl Layer {
    fn descriptor(&self) -> Descriptor {
        Descriptor::new(oci::MEDIA_TYPE_LAYER_TAR, self.digest.clone(), self.size)
    }
}

/// Writes `archives/<image>-<key>.tar` unless it exists; the key covers the name and the manifest,
/// which covers the config and every layer.
async fn write_archive(
    cache: &LayerCache,
    archives: &Path,
    spec: &ImageSpec,
    log: &Path,
) -> Result<BuiltImage> {
    let descriptors: Vec<Descriptor> = spec.layers.iter().map(Layer::descriptor).collect();
    let blobs = oci::image_blobs(spec.name, &spec.run, &descriptors)?;
    let key = Digest::of(format!("{}\n{}", spec.name, blobs.manifest_digest).as_bytes());
    let archive = archives.join(format!("{}-{}.tar", file_stem(spec.name), &key.hex()[..16]));
    let image = |built| BuiltImage {
        name: spec.name.to_string(),
        archive: archive.clone(),
        manifest_digest: blobs.manifest_digest.to_string(),
        built,
    };
    if archive.is_file() {
        return Ok(image(false));
    }

    let work = cache.work_dir(&key)?;
    let result = async {
        let layout = work.join("layout");
        let blob_dir = layout.join("blobs").join("sha256");
        std::fs::create_dir_all(&blob_dir).map_err(Error::io("creating", &blob_dir))?;
        let write = |path: PathBuf, bytes: &[u8]| {
            std::fs::write(&path, bytes).map_err(Error::io("writing", &path))
        };
        write(layout.join("oci-layout"), oci::OCI_LAYOUT.as_bytes())?;
        write(layout.join("index.json"), &blobs.index)?;
        write(
            blob_dir.join(Digest::of(&blobs.config).hex()),
            &blobs.config,
        )?;
        write(blob_dir.join(blobs.manifest_digest.hex()), &blobs.manifest)?;
        for layer in &spec.layers {
            // A hard link, not a copy: the layers are hundreds of MB and tar reads them once more.
            let blob = blob_dir.join(layer.digest.hex());
            if !blob.exists() {
                std::fs::hard_link(&layer.path, &blob)
                    .or_else(|_| std::fs::copy(&layer.path, &blob).map(|_| ()))
                    .map_err(Error::io("linking", &blob))?;
            }
        }
        let partial = work.join("archive.tar");
        tar(
            &layout,
            &partial,
            &["oci-layout", "index.json", "blobs"],
            false,
            log,
        )
        .await?;
        std::fs::rename(&partial, &archive).map_err(Error::io("installing", &archive))
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| image(true))
}

/// `localhost/lmi/hello-python:dev` -> `hello-python-dev`.
fn file_stem(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Packed layers under `$CACHE/images/layers`, keyed by a hash of their recipe.
#[derive(Debug, Clone)]
pub struct LayerCache {
    layers: PathBuf,
    tmp: PathBuf,
}

impl LayerCache {
    /// Opens (creates) the cache and removes work directories left by builds that died.
    pub fn open(images_dir: &Path) -> Result<Self> {
        let cache = LayerCache {
            layers: images_dir.join("layers"),
            tmp: images_dir.join("tmp"),
        };
        for dir in [&cache.layers, &cache.tmp] {
            std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
        }
        cache.remove_stale_work_dirs();
        Ok(cache)
    }

    /// Work directories are named `<key>-<pid>`; a dead pid's directory is garbage unless
    /// something is still mounted in it (an interrupted debootstrap leaves /proc mounted, and
    /// removing files below a live proc or sys mount must never be tried).
    fn remove_stale_work_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.tmp) else {
            return;
        };
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            let prefix = path.display().to_string();
            if mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .any(|m| m.starts_with(&prefix))
            {
                tracing::warn!(dir = %path.display(), "stale image work directory has mounts; not removing it");
                continue;
            }
            let _ = std::fs::remove_dir_all(&path);
        }
    }

    /// A scratch directory of the cache (outside any Go module or repository).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    fn work_dir(&self, key: &Digest) -> Result<PathBuf> {
        let dir = self
            .tmp
            .join(format!("{}-{}", &key.hex()[..16], std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        Ok(dir)
    }

    /// The layer for `recipe`, from the cache or built now: `build` fills the directory it is given
    /// (the layer's root), which is then packed. `normalize_modes` makes every entry world readable
    /// (and directories and executables world searchable/executable) for the pods' uid 993; the
    /// Debian root keeps its own modes. Returns whether the layer was built.
    pub async fn get_or_build(
        &self,
        label: &str,
        recipe: &str,
        normalize_modes: bool,
        log: &Path,
        build: impl AsyncFnOnce(&Path) -> Result<()>,
    ) -> Result<(Layer, bool)> {
        let key = Digest::of(format!("{label}\n{recipe}").as_bytes());
        let tar_path = self.layers.join(format!("{}.tar", key.hex()));
        let digest_file = self.layers.join(format!("{}.digest", key.hex()));
        if let Some(layer) = read_digest_file(&digest_file, &tar_path) {
            return Ok((layer, false));
        }
        let started = Instant::now();
        info!(layer = label, "building layer");
        let work = self.work_dir(&key)?;
        let result = async {
            let root = work.join("root");
            std::fs::create_dir_all(&root).map_err(Error::io("creating", &root))?;
            build(&root).await?;
            let partial = work.join("layer.tar");
            tar(&root, &partial, &["."], normalize_modes, log).await?;
            let (digest, size) = {
                let partial = partial.clone();
                tokio::task::spawn_blocking(move || Digest::of_file(&partial))
                    .await
                    .map_err(|e| Error::Other(format!("hashing {label}: {e}")))??
            };
            // The digest file first, the tar last: a tar without its digest file is rebuilt, and
            // the digest file alone is never read.
            std::fs::write(&digest_file, format!("{digest} {size}\n"))
                .map_err(Error::io("writing", &digest_file))?;
            std::fs::rename(&partial, &tar_path).map_err(Error::io("installing", &tar_path))?;
            Ok::<_, Error>(Layer {
                path: tar_path.clone(),
                digest,
                size,
            })
        }
        .await;
        let _ = std::fs::remove_dir_all(&work);
        let layer = result?;
        info!(
            layer = label,
            seconds = started.elapsed().as_secs_f32(),
            mb = layer.size / (1 << 20),
            "layer built"
        );
        Ok((layer, true))
    }
}

fn read_digest_file(digest_file: &Path, tar: &Path) -> Option<Layer> {
    let text = std::fs::read_to_string(digest_file).ok()?;
    let (digest, size) = text.trim().split_once(' ')?;
    let size: u64 = size.parse().ok()?;
    // A size check catches a tar replaced behind the cache's back without reading it.
    let actual = std::fs::metadata(tar).ok()?.len();
    (actual == size).then_some(Layer {
        path: tar.to_path_buf(),
        digest: Digest::parse(digest)?,
        size,
    })
}

/// Identity of a file that is too big to hash on every run: path, size and modification time
/// (cargo rewrites a binary it rebuilds, so its mtime moves).
pub fn file_fingerprint(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(Error::io("reading", path))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{} {} {mtime}", path.display(), meta.len()))
}

/// GNU tar flags that make the same tree give the same bytes: sorted names, every mtime 0, owner
/// and group root by number (no names from this machine's /etc/passwd).
const DETERMINISTIC_TAR: &[&str] = &[
    "--sort=name",
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--format=gnu",
];

fn tar_args(dir: &Path, out: &Path, members: &[&str], normalize_modes: bool) -> Vec<String> {
    let mut args: Vec<String> = DETERMINISTIC_TAR.iter().map(|s| s.to_string()).collect();
    if normalize_modes {
        args.push("--mode=a+rX,u+w".into());
    }
    args.push("-C".into());
    args.push(dir.display().to_string());
    args.push("-cf".into());
    args.push(out.display().to_string());
    args.push("--".into());
    args.extend(members.iter().map(|m| m.to_string()));
    args
}

async fn tar(
    dir: &Path,
    out: &Path,
    members: &[&str],
    normalize_modes: bool,
    log: &Path,
) -> Result<()> {
    let mut cmd = Command::new("tar");
    cmd.args(tar_args(dir, out, members, normalize_modes));
    run_logged("tar", log, &mut cmd).await
}

/// [`logs::run_logged`] for an image step.
pub(crate) async fn run_logged(what: &str, log: &Path, cmd: &mut Command) -> Result<()> {
    logs::run_logged(&format!("image {what}"), log, cmd).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_image_in_ctr_images_ls() {
        let out = "REF                              TYPE                                    DIGEST                                                                  SIZE     PLATFORMS   LABELS\n\
localhost/lmi/pause:3.10         application/vnd.oci.image.manifest.v1+json sha256:aaaa 347.0 KiB linux/amd64 -\n\
localhost/lmi/sidecar:dev        application/vnd.oci.image.manifest.v1+json sha256:bbbb 120.0 MiB linux/amd64 -\n";
        assert!(image_listed(out, "localhost/lmi/pause:3.10", "sha256:aaaa"));
        assert!(!image_listed(
            out,
            "localhost/lmi/pause:3.10",
            "sha256:bbbb"
        ));
        assert!(!image_listed(out, "localhost/lmi/pause", "sha256:aaaa"));
        assert!(!image_listed("", "localhost/lmi/pause:3.10", "sha256:aaaa"));
    }

    #[test]
    fn archive_names_are_file_safe() {
        assert_eq!(
            file_stem("localhost/lmi/hello-python:dev"),
            "hello-python-dev"
        );
        assert_eq!(file_stem("localhost/lmi/pause:3.10"), "pause-3.10");
    }

    #[test]
    fn tar_is_deterministic_and_normalizes_modes_only_when_asked() {
        let args = tar_args(Path::new("/d"), Path::new("/o.tar"), &["."], true);
        for flag in [
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
        }
        assert!(args.iter().any(|a| a == "--mode=a+rX,u+w"));
        let args = tar_args(Path::new("/d"), Path::new("/o.tar"), &["."], false);
        assert!(!args.iter().any(|a| a.starts_with("--mode")));
        assert_eq!(args.last().map(String::as_str), Some("."));
    }

    #[test]
    fn digest_file_needs_a_tar_of_its_size() {
        let dir = std::env::temp_dir().join(format!("lmi-images-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let tar = dir.join("l.tar");
        let digest_file = dir.join("l.digest");
        let digest = Digest::of(b"abc");
        std::fs::write(&digest_file, format!("{digest} 3\n")).expect("write");
        assert_eq!(read_digest_file(&digest_file, &tar), None);
        std::fs::write(&tar, b"abcd").expect("write");
        assert_eq!(read_digest_file(&digest_file, &tar), None);
        std::fs::write(&tar, b"abc").expect("write");
        let layer = read_digest_file(&digest_file, &tar).expect("layer");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!((layer.digest, layer.size), (digest, 3));
    }
}
