//! The committed CRD YAML in the chart must equal what the Rust types generate.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[test]
fn committed_crds_match_the_rust_types() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/modelgate-crds/templates");
    for (file, crd) in modelgate_crds::crds() {
        let want = modelgate_crds::crd_yaml(&crd).unwrap();
        let have = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| {
            panic!("{file}: {e}; run `cargo run -p modelgate-crds --bin crdgen`")
        });
        assert!(
            have == want,
            "{file} is stale; run `cargo run -p modelgate-crds --bin crdgen`"
        );
    }
}
