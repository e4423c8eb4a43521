//! Fails when `src/generated.rs` is not what `cargo xtask codegen` makes of
//! `openapi/providers/pipedrive.yaml` today, and then writes the fresh copy, so that a rerun
//! passes and `git diff` shows the change to review and commit.

use xtask::providers::{Provider, generate_client};

const PROVIDER: Provider = Provider::Pipedrive;

#[test]
fn generated_client_is_fresh() {
    let spec = PROVIDER.load_spec().expect("the provider document loads");
    let fresh = generate_client(PROVIDER, &spec).expect("progenitor generates the client");
    let path = xtask::workspace_root().join(PROVIDER.generated_path());
    let outcome = xtask::sync_file(&path, &fresh, false).expect("generated.rs can be updated");
    if outcome == xtask::CodegenOutcome::Written {
        println!("wrote the fresh client to {}", path.display());
        panic!(
            "{} was stale and has been regenerated from {}; review the change, commit it \
             and rerun the tests",
            PROVIDER.generated_path(),
            PROVIDER.spec_path()
        );
    }
}

#[test]
fn generation_is_deterministic() {
    let spec = PROVIDER.load_spec().expect("the provider document loads");
    let first = generate_client(PROVIDER, &spec).unwrap();
    let second = generate_client(PROVIDER, &spec).unwrap();
    assert!(
        first == second,
        "two generations of the same document differ"
    );
    assert!(first.starts_with(&PROVIDER.header()));
}
