//! The Debian base of every image but pause: `debootstrap --variant=minbase` of bookworm with
//! python3 and ca-certificates, slimmed and packed as one layer.
//!
//! Bookworm because its python3 is 3.11, the CPython the awslambdaric wheel is built for, and
//! because the node's containerd comes from the same Debian. Building it takes minutes, so the layer
//! is cached by its recipe (suite, packages, mirror, slimming steps) and built once per machine;
//! every image that uses it shares the one blob.

use std::path::Path;

use tokio::process::Command;

use super::{Layer, LayerCache, run_logged};
use crate::error::{Error, Result};
use crate::logs;

pub const SUITE: &str = "bookworm";
pub const MIRROR: &str = "http://deb.debian.org/debian";
pub const PACKAGES: &[&str] = &["python3", "ca-certificates"];

/// Bump when the slimming below changes, so that machines rebuild their cached base.
const RECIPE_REVISION: u32 = 1;

/// Everything that decides the base layer's contents; its hash is the cache key.
pub fn recipe() -> String {
    format!(
        "debootstrap --variant=minbase --include={} {SUITE} {MIRROR}\nrevision={RECIPE_REVISION}\n",
        PACKAGES.join(",")
    )
}

/// Paths removed from the root file system after debootstrap: package caches and indexes (no apt
/// runs in a container), documentation, logs, and what the runtime provides at start (/dev,
/// /proc, /sys, /run, /tmp are mounted over; debootstrap leaves device nodes in /dev).
const STRIP: &[&str] = &[
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/cache/debconf/templates.dat-old",
    "var/cache/ldconfig",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/linda",
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "var/tmp",
];

/// The base layer, built when this machine has none for [`recipe`].
pub async fn ensure(cache: &LayerCache, log: &Path) -> Result<(Layer, bool)> {
    let key = recipe();
    cache
        .get_or_build("debian-base", &key, false, log, async |root: &Path| {
            build(root, log).await
        })
        .await
}

async fn build(root: &Path, log: &Path) -> Result<()> {
    logs::append_line(log, &format!("--- debootstrap into {}", root.display()))?;
    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(root)
        .arg(MIRROR);
    run_logged("debian base (debootstrap)", log, &mut debootstrap).await?;

    // Debian compiles the standard library's .pyc files against the sources' modification times,
    // but the layer is packed with every mtime set to 0 (for a reproducible tar), which would make
    // every .pyc stale: python3 would then compile the standard library again at each start and
    // could not even cache it (the root file system is read-only). Unchecked hash-based .pyc files
    // do not look at mtimes at all.
    let mut compile = Command::new("chroot");
    compile.arg(root).args([
        "/usr/bin/python3",
        "-m",
        "compileall",
        "-q",
        "-f",
        "--invalidation-mode",
        "unchecked-hash",
        "/usr/lib/python3.11",
        "/usr/lib/python3/dist-packages",
    ]);
    run_logged("debian base (compileall)", log, &mut compile).await?;

    for rel in STRIP {
        let path = root.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() {
            std::fs::remove_file(&path).map_err(Error::io("removing", &path))?;
            continue;
        }
        // Keep the directories themselves (with their modes: /tmp is 1777): only their contents go.
        let entries = std::fs::read_dir(&path).map_err(Error::io("listing", &path))?;
        for entry in entries {
            let entry = entry.map_err(Error::io("listing", &path))?;
            let child = entry.path();
            let file_type = entry.file_type().map_err(Error::io("inspecting", &child))?;
            if file_type.is_dir() {
                std::fs::remove_dir_all(&child).map_err(Error::io("removing", &child))?;
            } else {
                std::fs::remove_file(&child).map_err(Error::io("removing", &child))?;
            }
        }
    }
    // debootstrap copies the build host's resolver and name; the kubelet mounts its own over these
    // files, and the mount targets must exist because the root file system is read-only.
    for (rel, contents) in [
        ("etc/resolv.conf", ""),
        ("etc/hostname", ""),
        (
            "etc/hosts",
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
        ),
    ] {
        let path = root.join(rel);
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, contents).map_err(Error::io("writing", &path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_names_everything_that_shapes_the_base() {
        let r = recipe();
        assert!(r.contains("--variant=minbase"), "{r}");
        assert!(r.contains("--include=python3,ca-certificates"), "{r}");
        assert!(r.contains(SUITE) && r.contains(MIRROR), "{r}");
    }
}
