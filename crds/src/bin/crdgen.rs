//! Writes modelgate's CRDs into the CRD chart (`charts/modelgate-crds/templates/`), or to
//! the directory given as the first argument.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/modelgate-crds/templates")
        });
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in modelgate_crds::crds() {
        let path = dir.join(file);
        std::fs::write(&path, modelgate_crds::crd_yaml(&crd)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
