//! Spec tooling for the unified CRM API: loading OpenAPI documents, normalising the 3.1
//! document the server emits to 3.0, deriving the view of the spec the client generator is
//! fed, and comparing two 3.0 documents for wire compatibility.
//!
//! Every function works on `serde_json::Value`, so a document can come from a file
//! (`openapi/crm.yaml`), from `crm_api::openapi()` serialised with `serde_json`, or from a
//! test that edits a copy. This crate does no network I/O and writes no files.
//!
//! - [`load`] reads YAML or JSON.
//! - [`normalise_31_to_30`] turns utoipa's OpenAPI 3.1 output into 3.0.3 (see [`normalise`]).
//! - [`client_view()`] derives the document progenitor generates the client from (see
//!   [`client_view`](mod@client_view)).
//! - [`compare()`] judges an actual document against the expected one with `drift`, plus the
//!   checks drift does not make (see [`compare`](mod@compare)).
//! - [`convert_30_to_31`] turns the spec into OpenAPI 3.1 for publishing (see [`convert`]).
//! - [`Changelog`] groups the changes since the released document into breaking, additive
//!   and documentation, and gates `info.version` on them (see [`changelog`]).
//! - [`reference_page`] renders a document as one self-contained HTML page (see
//!   [`reference`]).

pub mod changelog;
pub mod client_view;
pub mod compare;
pub mod convert;
pub mod normalise;
mod pointer;
pub mod reference;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use changelog::{Changelog, Version};
pub use client_view::client_view;
pub use compare::{ChangeClass, Comparison, Finder, Impact, SpecChange, compare};
pub use convert::convert_30_to_31;
pub use normalise::normalise_31_to_30;
pub use reference::reference_page;

/// What can go wrong while loading, deriving or comparing documents.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is neither valid JSON nor valid YAML.
    #[error("{path} is not valid YAML or JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    /// A document is not an OpenAPI 3.0 document the `openapiv3` crate accepts.
    #[error("{which} document is not valid OpenAPI 3.0: {source}")]
    NotOpenApi30 {
        which: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A `$ref` points nowhere in its document.
    #[error("unresolvable reference {reference}")]
    UnresolvedRef { reference: String },
    /// The document does not have the shape this crate expects at some place.
    #[error("unexpected document shape at {path}: {message}")]
    Shape { path: String, message: String },
    /// progenitor 0.15 cannot generate a client for an operation, and the client view has
    /// no small rewrite that would let it.
    #[error("progenitor cannot generate {path}: {message}")]
    NotGenerable { path: String, message: String },
    /// `drift` failed (or panicked) while comparing the documents.
    #[error("drift could not compare the documents: {0}")]
    Drift(String),
    /// A document's `info.version` is not `MAJOR.MINOR.PATCH`.
    #[error("the {which} document's info.version {version:?} is not MAJOR.MINOR.PATCH")]
    BadVersion {
        which: &'static str,
        version: String,
    },
    /// The current document breaks compatibility with the released one, and its major
    /// version is not higher.
    #[error(
        "{count} breaking change(s) since the release of {released}, but info.version is \
         {current}: raise it to {next_major}.0.0, or make the change additive"
    )]
    BreakingWithoutMajor {
        count: usize,
        released: String,
        current: String,
        next_major: u64,
    },
    /// The current document's version is lower than the released one's.
    #[error("info.version went back from {released} (released) to {current}")]
    VersionWentBack { released: String, current: String },
    /// A release of a changed document needs a higher version.
    #[error(
        "the document changed since the last release: raise info.version from {current} to at least {at_least}"
    )]
    VersionNotRaised { current: String, at_least: String },
    /// The reference page's viewer assets cannot be used.
    #[error("the reference page cannot be built: {0}")]
    Viewer(String),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads an OpenAPI document from a YAML or JSON file.
///
/// JSON is a subset of YAML 1.2 for every document we handle, so one YAML parser reads both;
/// the result is the document as a `serde_json::Value`.
pub fn load(path: impl AsRef<Path>) -> Result<Value> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|source| Error::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Parses an OpenAPI document held in a string, YAML or JSON.
pub fn parse(text: &str) -> Result<Value, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

/// Checks that `doc` deserialises as an `openapiv3::OpenAPI` (a 3.0 document).
///
/// `which` names the document in the error ("expected", "actual", "client view").
pub fn check_openapi_30(doc: &Value, which: &'static str) -> Result<openapiv3::OpenAPI> {
    serde_json::from_value(doc.clone()).map_err(|source| Error::NotOpenApi30 { which, source })
}

#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value;

    /// The hand-written spec, the source of truth, loaded once per test.
    pub fn crm_yaml() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/crm.yaml");
        crate::load(path).expect("openapi/crm.yaml loads")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_yaml_and_json() {
        let dir = std::env::temp_dir().join(format!("crm-spec-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = dir.join("a.yaml");
        let json = dir.join("a.json");
        std::fs::write(
            &yaml,
            "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\n",
        )
        .unwrap();
        std::fs::write(
            &json,
            r#"{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{}}"#,
        )
        .unwrap();
        assert_eq!(load(&yaml).unwrap(), load(&json).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_reports_missing_file() {
        let err = load("/nonexistent/crm.yaml").unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err}");
    }

    #[test]
    fn crm_yaml_is_openapi_30() {
        let doc = test_support::crm_yaml();
        check_openapi_30(&doc, "crm.yaml").unwrap();
    }
}
