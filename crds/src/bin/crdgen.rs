//! Writes the CRD manifests and admission policies generated from the Rust types (see
//! `lmi_crds::crdgen`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let outputs = match lmi_crds::crdgen::outputs() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lmi-crdgen: cannot render the manifests: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = lmi_crds::crdgen::repository_root();
    for (relative, text) in &outputs {
        let path = root.join(relative);
        if let Some(dir) = path.parent()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            eprintln!("lmi-crdgen: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("lmi-crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
