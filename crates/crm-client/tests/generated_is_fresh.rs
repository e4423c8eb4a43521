//! Fails when `src/generated.rs` is not what `cargo xtask codegen` makes of the spec today,
//! and then writes the fresh copy, so that a rerun passes and `git diff` shows the change
//! to review and commit.

#[test]
fn generated_client_is_fresh() {
    let spec = xtask::load_spec().expect("openapi/crm.yaml loads");
    let fresh = xtask::generate_client(&spec).expect("progenitor generates the client");
    let path = xtask::workspace_root().join(xtask::GENERATED_PATH);
    let outcome = xtask::sync_file(&path, &fresh, false).expect("generated.rs can be updated");
    if outcome == xtask::CodegenOutcome::Written {
        println!("wrote the fresh client to {}", path.display());
        panic!(
            "{} was stale and has been regenerated from {}; review the change, commit it \
             and rerun the tests",
            xtask::GENERATED_PATH,
            xtask::SPEC_PATH
        );
    }
}

#[test]
fn generation_is_deterministic() {
    let spec = xtask::load_spec().expect("openapi/crm.yaml loads");
    let first = xtask::generate_client(&spec).unwrap();
    let second = xtask::generate_client(&spec).unwrap();
    assert!(first == second, "two generations of the same spec differ");
    assert!(first.starts_with(xtask::GENERATED_HEADER));
}
