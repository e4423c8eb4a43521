//! Fails when `src/generated.rs` is not what `cargo xtask codegen` makes of
//! `openapi/providers/hubspot.yaml` today, and then writes the fresh copy, so that a rerun
//! passes and `git diff` shows the change to review and commit.

use xtask::providers::{Provider, generate_client};

const PROVIDER: Provider = Provider::HubSpot;

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

/// The date version is one setting: every CRM path of the document carries
/// [`hubspot_client::API_VERSION`], and no other version. A path left on another version
/// (or on the numeric `/crm/v3/` paths HubSpot retires) fails here.
#[test]
fn every_crm_path_is_on_the_one_date_version() {
    let spec = PROVIDER.load_spec().expect("the provider document loads");
    let paths = spec["paths"].as_object().expect("paths");
    let version = hubspot_client::API_VERSION;
    let mut crm = 0;
    for path in paths.keys().filter(|p| p.starts_with("/crm/")) {
        crm += 1;
        let segment = path.split('/').nth(3).unwrap_or_default();
        assert_eq!(segment, version, "{path} is not on version {version}");
    }
    assert!(
        crm >= 10,
        "the document describes the CRM paths ({crm} found)"
    );
}
