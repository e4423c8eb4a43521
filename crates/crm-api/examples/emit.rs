//! Prints the emitted OpenAPI document (3.1 JSON) to standard output.
fn main() {
    println!(
        "{}",
        crm_api::openapi().to_pretty_json().expect("serialisable")
    );
}
