//! The checked-in CRD manifests and admission policies equal what the Rust types generate. When
//! this fails, run `cargo run -p lmi-crds --bin lmi-crdgen` and commit the result.
#![allow(clippy::expect_used)]

#[test]
fn checked_in_manifests_match_the_types() {
    let outputs = lmi_crds::crdgen::outputs().expect("manifests render");
    let root = lmi_crds::crdgen::repository_root();
    let mut stale = Vec::new();
    for (relative, text) in &outputs {
        match std::fs::read_to_string(root.join(relative)) {
            Ok(on_disk) if on_disk == *text => {}
            Ok(_) => stale.push(format!("{relative} differs")),
            Err(e) => stale.push(format!("{relative} unreadable: {e}")),
        }
    }
    for dir in lmi_crds::crdgen::OUTPUT_DIRS {
        let extra: Vec<String> = std::fs::read_dir(root.join(dir))
            .expect("output folder readable")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .map(|f| format!("{dir}/{f}"))
            .filter(|f| !outputs.iter().any(|(relative, _)| relative == f))
            .collect();
        stale.extend(extra.into_iter().map(|f| format!("{f} is not generated")));
    }
    assert!(
        stale.is_empty(),
        "manifests drifted from the types ({}); run `cargo run -p lmi-crds --bin lmi-crdgen`",
        stale.join("; ")
    );
}
