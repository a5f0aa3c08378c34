//! The OCI image layout, written by hand: image config, manifest, index and `oci-layout` as JSON,
//! content addressed by SHA-256. Pure functions only (no processes, no files but the digest of
//! one), so every shape here is unit-tested.
//!
//! Layers stay uncompressed tars (`application/vnd.oci.image.layer.v1.tar`): the archive never
//! leaves this machine, containerd unpacks them as they are, and their digest is then also their
//! DiffID, so no gzip step (and no compression crate) is needed.
//!
//! Spec: <https://github.com/opencontainers/image-spec> (config.md, manifest.md, image-index.md,
//! image-layout.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// containerd names an imported image after this annotation of its index entry (a full
/// reference, `localhost/lmi/pause:3.10`); without it `ctr images import` would only know the tag.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI layout's own name for an entry: by convention just the tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Contents of the `oci-layout` file at the root of every layout.
pub const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// A content address, `sha256:<64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// Digest and size of a file, read in chunks (layers are hundreds of MB).
    pub fn of_file(path: &Path) -> Result<(Self, u64)> {
        let mut file = std::fs::File::open(path).map_err(Error::io("opening", path))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(Error::io("reading", path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((Self::from_hasher(hasher), size))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in hasher.finalize() {
            let _ = write!(s, "{b:02x}");
        }
        Digest(s)
    }

    /// Parses `sha256:<64 lowercase hex>`; anything else is not a digest this code wrote.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Digest(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits: the blob's file name under `blobs/sha256/`.
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reference to a blob, as manifests and indexes carry them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: &'static str,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &'static str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type,
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub architecture: &'static str,
    pub os: &'static str,
}

/// Every image here is for the local node: linux/amd64.
pub const LINUX_AMD64: Platform = Platform {
    architecture: "amd64",
    os: "linux",
};

/// What a container runs with: the `config` object of the image config. Field names are the
/// spec's (Docker's) capitalised ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunConfig {
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint", skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    // A fixed date: a timestamp of the build would change the digest of unchanged images.
    created: &'static str,
    architecture: &'static str,
    os: &'static str,
    config: &'a RunConfig,
    rootfs: RootFs<'a>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: &'a [Digest],
}

/// The image config blob. `diff_ids` are the digests of the uncompressed layers, bottom first;
/// with uncompressed layers they equal the layer digests.
pub fn image_config(run: &RunConfig, diff_ids: &[Digest]) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&ImageConfig {
        created: "1970-01-01T00:00:00Z",
        architecture: LINUX_AMD64.architecture,
        os: LINUX_AMD64.os,
        config: run,
        rootfs: RootFs {
            kind: "layers",
            diff_ids,
        },
    })?)
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

/// The image manifest blob: the config and the layers, bottom first.
pub fn manifest(config: &Descriptor, layers: &[Descriptor]) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST,
        config,
        layers,
    })?)
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: &'a [Descriptor],
}

/// `index.json` of a layout holding one image: its manifest, for linux/amd64, named `name`
/// (`registry/repository:tag`) for containerd and by its tag for OCI tools.
pub fn index(manifest: &[u8], name: &str) -> Result<Vec<u8>> {
    let mut entry = Descriptor::new(
        MEDIA_TYPE_MANIFEST,
        Digest::of(manifest),
        manifest.len() as u64,
    );
    entry.platform = Some(LINUX_AMD64);
    entry
        .annotations
        .insert(ANNOTATION_CONTAINERD_NAME.into(), name.into());
    entry
        .annotations
        .insert(ANNOTATION_REF_NAME.into(), tag_of(name).into());
    Ok(serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX,
        manifests: std::slice::from_ref(&entry),
    })?)
}

/// The tag of a reference: what follows the last `:` after the last `/` (`latest` when none; a
/// `:` before the last `/` is a registry port).
pub fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag,
        _ => "latest",
    }
}

/// Every blob of one image, config and manifest included, so that a layout can be written.
#[derive(Debug, Clone)]
pub struct ImageBlobs {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub index: Vec<u8>,
    /// Digest of `manifest`: what containerd records as the image's target.
    pub manifest_digest: Digest,
}

/// Config, manifest and index of an image made of `layers` (bottom first).
pub fn image_blobs(name: &str, run: &RunConfig, layers: &[Descriptor]) -> Result<ImageBlobs> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
    let config = image_config(run, &diff_ids)?;
    let config_desc = Descriptor::new(MEDIA_TYPE_CONFIG, Digest::of(&config), config.len() as u64);
    let manifest = manifest(&config_desc, layers)?;
    let index = index(&manifest, name)?;
    Ok(ImageBlobs {
        manifest_digest: Digest::of(&manifest),
        config,
        manifest,
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn layer(byte: u8) -> Descriptor {
        Descriptor::new(MEDIA_TYPE_LAYER_TAR, Digest::of(&[byte]), 1)
    }

    #[test]
    fn digests_are_sha256_in_lowercase_hex() {
        // sha256("") and sha256("abc") from FIPS 180-2.
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let abc = Digest::of(b"abc");
        assert_eq!(
            abc.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(abc.as_str()), Some(abc.clone()));
        assert_eq!(Digest::parse("sha256:ABC"), None);
        assert_eq!(Digest::parse(abc.hex()), None);
    }

    #[test]
    fn file_digest_matches_the_bytes() {
        let dir = std::env::temp_dir().join(format!("lmi-oci-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("blob");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        let (digest, size) = Digest::of_file(&path).expect("digest");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(digest, Digest::of(&bytes));
        assert_eq!(size, bytes.len() as u64);
    }

    #[test]
    fn tags_of_references() {
        assert_eq!(tag_of("localhost/lmi/pause:3.10"), "3.10");
        assert_eq!(tag_of("localhost:5000/lmi/sidecar:dev"), "dev");
        assert_eq!(tag_of("localhost:5000/lmi/sidecar"), "latest");
    }

    #[test]
    fn config_has_the_spec_shape() {
        let run = RunConfig {
            env: vec!["PATH=/usr/bin".into()],
            entrypoint: vec!["/pause".into()],
            working_dir: Some("/var/task".into()),
            ..RunConfig::default()
        };
        let layers = [layer(1), layer(2)];
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
        let config: Value =
            serde_json::from_slice(&image_config(&run, &diff_ids).expect("config")).expect("json");
        assert_eq!(
            config,
            json!({
                "created": "1970-01-01T00:00:00Z",
                "architecture": "amd64",
                "os": "linux",
                "config": {
                    "Env": ["PATH=/usr/bin"],
                    "Entrypoint": ["/pause"],
                    "WorkingDir": "/var/task",
                },
                "rootfs": {"type": "layers", "diff_ids": [diff_ids[0].as_str(), diff_ids[1].as_str()]},
            })
        );
    }

    #[test]
    fn manifest_and_index_reference_their_blobs_and_carry_the_name() {
        let name = "localhost/lmi/hello-python:dev";
        let layers = [layer(1), layer(2)];
        let blobs = image_blobs(name, &RunConfig::default(), &layers).expect("blobs");

        let manifest: Value = serde_json::from_slice(&blobs.manifest).expect("json");
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_CONFIG);
        assert_eq!(
            manifest["config"]["digest"],
            Digest::of(&blobs.config).as_str()
        );
        assert_eq!(manifest["config"]["size"], blobs.config.len());
        assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(2));
        assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_TYPE_LAYER_TAR);
        assert_eq!(manifest["layers"][1]["digest"], layers[1].digest.as_str());
        assert!(manifest["layers"][0].get("annotations").is_none());

        let index: Value = serde_json::from_slice(&blobs.index).expect("json");
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], MEDIA_TYPE_INDEX);
        let entry = &index["manifests"][0];
        assert_eq!(entry["mediaType"], MEDIA_TYPE_MANIFEST);
        assert_eq!(entry["digest"], blobs.manifest_digest.as_str());
        assert_eq!(blobs.manifest_digest, Digest::of(&blobs.manifest));
        assert_eq!(entry["size"], blobs.manifest.len());
        assert_eq!(
            entry["platform"],
            json!({"architecture": "amd64", "os": "linux"})
        );
        assert_eq!(
            entry["annotations"],
            json!({
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": "dev",
            })
        );
        let layout: Value = serde_json::from_str(OCI_LAYOUT).expect("json");
        assert_eq!(layout, json!({"imageLayoutVersion": "1.0.0"}));
    }

    #[test]
    fn blobs_are_deterministic_and_follow_their_inputs() {
        let run = RunConfig {
            cmd: vec!["app.handler".into()],
            ..RunConfig::default()
        };
        let a = image_blobs("localhost/x:1", &run, &[layer(1)]).expect("a");
        let b = image_blobs("localhost/x:1", &run, &[layer(1)]).expect("b");
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.index, b.index);
        let c = image_blobs("localhost/x:1", &run, &[layer(2)]).expect("c");
        assert_ne!(a.manifest_digest, c.manifest_digest);
        // The name is only in the index: the same content under another name is the same image.
        let d = image_blobs("localhost/y:1", &run, &[layer(1)]).expect("d");
        assert_eq!(a.manifest_digest, d.manifest_digest);
        assert_ne!(a.index, d.index);
    }
}
