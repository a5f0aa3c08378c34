//! Writes the CRD manifests generated from the Rust types (see `lmi_crds::crdgen`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let rendered = match lmi_crds::crdgen::render() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lmi-crdgen: cannot render the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = lmi_crds::crdgen::repository_root();
    for dir in lmi_crds::crdgen::OUTPUT_DIRS {
        let dir = root.join(dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("lmi-crdgen: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        for (name, text) in &rendered {
            let path = dir.join(name);
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("lmi-crdgen: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
    }
    ExitCode::SUCCESS
}
