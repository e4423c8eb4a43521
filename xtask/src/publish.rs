//! `cargo xtask publish`: the published form of the spec, written to `dist/`.
//!
//! | file | what |
//! |---|---|
//! | `openapi.yaml` | `openapi/crm.yaml` as written (OpenAPI 3.0.3) |
//! | `openapi.json` | the same document as JSON |
//! | `openapi-3.1.json` | the document converted to OpenAPI 3.1 ([`crm_spec::convert_30_to_31`]) |
//! | `reference.html` | the reference page, self-contained ([`crm_spec::reference_page`]) |
//! | `CHANGELOG.md` | the changes since `openapi/released/crm.yaml` |
//!
//! Nothing is written unless the spec passes the gates first: it is OpenAPI 3.0, the
//! release gate ([`crm_spec::Changelog::check`]) passes, and the 3.1 document normalised
//! back to 3.0 compares with the source without a significant change (the conversion lost
//! nothing).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::release::Specs;

/// Where `cargo xtask publish` writes, relative to the workspace root (ignored by git).
pub const DIST_DIR: &str = "dist";

/// One file written by [`publish`].
#[derive(Debug, Clone)]
pub struct PublishedFile {
    pub path: PathBuf,
    pub bytes: usize,
}

/// What [`publish`] wrote and how long it took.
#[derive(Debug, Clone)]
pub struct PublishReport {
    pub version: String,
    pub files: Vec<PublishedFile>,
    pub elapsed: Duration,
}

/// Publishes the spec of the workspace at `root` into `out`, reporting each step to
/// `progress` as it starts.
pub fn publish(root: &Path, out: &Path, progress: &mut dyn FnMut(&str)) -> Result<PublishReport> {
    let started = Instant::now();
    progress("reading openapi/crm.yaml and openapi/released/crm.yaml");
    let specs = Specs::load(root)?;

    progress("checking the changes since the last release");
    let changelog = specs.changelog()?;
    changelog
        .check()
        .context("the spec does not pass the release gate")?;

    progress("converting to OpenAPI 3.1 and checking the conversion lost nothing");
    let v31 = crm_spec::convert_30_to_31(&specs.current);
    let back = crm_spec::normalise_31_to_30(&v31);
    let round_trip = crm_spec::compare(&specs.current, &back)
        .context("comparing the 3.1 document, normalised back, with the source")?;
    if !round_trip.is_compatible() {
        bail!("the OpenAPI 3.1 conversion is not lossless:\n{round_trip}");
    }

    progress("building the reference page (Swagger UI, inlined)");
    let page = crm_spec::reference_page(&specs.current)?;

    progress(&format!("writing {}", out.display()));
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let files = [
        ("openapi.yaml", specs.current_text.clone()),
        ("openapi.json", pretty(&specs.current)?),
        ("openapi-3.1.json", pretty(&v31)?),
        ("reference.html", page),
        ("CHANGELOG.md", changelog.to_markdown()),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = out.join(name);
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        written.push(PublishedFile {
            path,
            bytes: text.len(),
        });
    }
    Ok(PublishReport {
        version: changelog.current.to_string(),
        files: written,
        elapsed: started.elapsed(),
    })
}

fn pretty(doc: &serde_json::Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(doc)? + "\n")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::release::RELEASED_PATH;
    use crate::{SPEC_PATH, workspace_root};

    fn quiet() -> impl FnMut(&str) {
        |_| {}
    }

    #[test]
    fn publishes_every_document() {
        let out = tempfile::tempdir().unwrap();
        let mut steps = Vec::new();
        let report = publish(&workspace_root(), out.path(), &mut |s| {
            steps.push(s.to_owned())
        })
        .unwrap();
        assert!(steps.len() >= 5, "{steps:?}");
        assert_eq!(report.files.len(), 5);

        let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap();
        let source = std::fs::read_to_string(workspace_root().join(SPEC_PATH)).unwrap();
        assert_eq!(read("openapi.yaml"), source);
        let v30: Value = serde_json::from_str(&read("openapi.json")).unwrap();
        assert_eq!(v30, crm_spec::parse(&source).unwrap());
        assert_eq!(v30["openapi"], "3.0.3");
        let v31: Value = serde_json::from_str(&read("openapi-3.1.json")).unwrap();
        assert_eq!(v31["openapi"], "3.1.0");
        assert_eq!(v31, crm_spec::convert_30_to_31(&v30));
        assert!(read("reference.html").contains("SwaggerUIBundle"));
        assert!(read("CHANGELOG.md").starts_with("## Changes from "));
    }

    #[test]
    fn refuses_a_breaking_change_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("openapi/released")).unwrap();
        let text = std::fs::read_to_string(workspace_root().join(SPEC_PATH)).unwrap();
        std::fs::write(root.path().join(RELEASED_PATH), &text).unwrap();
        let mut current = crm_spec::parse(&text).unwrap();
        current["components"]["parameters"]["Raw"]["required"] = json!(true);
        std::fs::write(
            root.path().join(SPEC_PATH),
            serde_yaml::to_string(&current).unwrap(),
        )
        .unwrap();

        let out = root.path().join("dist");
        let err = publish(root.path(), &out, &mut quiet()).unwrap_err();
        assert!(format!("{err:#}").contains("breaking change"), "{err:#}");
        assert!(!out.exists());
    }
}
