//! The checked-in CRD manifests equal what the Rust types generate. When this fails, run
//! `cargo run -p lmi-crds --bin lmi-crdgen` and commit the result.
#![allow(clippy::expect_used)]

#[test]
fn checked_in_crds_match_the_types() {
    let rendered = lmi_crds::crdgen::render().expect("CRDs render");
    let root = lmi_crds::crdgen::repository_root();
    let mut stale = Vec::new();
    for dir in lmi_crds::crdgen::OUTPUT_DIRS {
        for (name, text) in &rendered {
            let path = root.join(dir).join(name);
            match std::fs::read_to_string(&path) {
                Ok(on_disk) if on_disk == *text => {}
                Ok(_) => stale.push(format!("{dir}/{name} differs")),
                Err(e) => stale.push(format!("{dir}/{name} unreadable: {e}")),
            }
        }
        let extra: Vec<String> = std::fs::read_dir(root.join(dir))
            .expect("output folder readable")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|f| !rendered.iter().any(|(name, _)| name == f))
            .collect();
        stale.extend(
            extra
                .into_iter()
                .map(|f| format!("{dir}/{f} is not generated")),
        );
    }
    assert!(
        stale.is_empty(),
        "CRD manifests drifted from the types ({}); run `cargo run -p lmi-crds --bin lmi-crdgen`",
        stale.join("; ")
    );
}
