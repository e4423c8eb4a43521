//! The released document and the gates on it: `cargo xtask spec changelog | check | release`.
//!
//! `openapi/released/crm.yaml` is the last released spec. The current spec is compared with
//! it by [`crm_spec::Changelog`]; see there for what breaking, additive and documentation
//! mean and what each gate demands of `info.version`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use crm_spec::Changelog;
use serde_json::Value;

use crate::SPEC_PATH;

/// The last released spec, relative to the workspace root.
pub const RELEASED_PATH: &str = "openapi/released/crm.yaml";

/// The current and the released spec of a workspace.
#[derive(Debug, Clone)]
pub struct Specs {
    /// The text of `openapi/crm.yaml`, as written.
    pub current_text: String,
    /// `openapi/crm.yaml`, parsed.
    pub current: Value,
    /// `openapi/released/crm.yaml`, parsed.
    pub released: Value,
}

impl Specs {
    /// Reads both documents under the workspace `root`.
    pub fn load(root: &Path) -> Result<Specs> {
        let current_path = root.join(SPEC_PATH);
        let current_text = std::fs::read_to_string(&current_path)
            .with_context(|| format!("reading {}", current_path.display()))?;
        let current = crm_spec::parse(&current_text)
            .with_context(|| format!("parsing {}", current_path.display()))?;
        crm_spec::check_openapi_30(&current, "current")?;
        let released_path = root.join(RELEASED_PATH);
        let released = crm_spec::load(&released_path).with_context(|| {
            format!(
                "loading the released spec (`cargo xtask spec release` creates {RELEASED_PATH})"
            )
        })?;
        Ok(Specs {
            current_text,
            current,
            released,
        })
    }

    /// The changes from the released document to the current one.
    pub fn changelog(&self) -> Result<Changelog> {
        Changelog::between(&self.released, &self.current)
            .context("comparing the current spec with the released one")
    }
}

/// What [`release`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The released document was replaced by the current one.
    Released { path: PathBuf, version: String },
    /// The current document equals the released one; nothing was written.
    NothingToRelease,
}

/// The history of releases, newest first, relative to the workspace root.
pub const CHANGELOG_PATH: &str = "CHANGELOG.md";

const CHANGELOG_PREAMBLE: &str = "# Changelog

The released versions of the API's spec (`openapi/released/crm.yaml`), newest first. Each
entry is written by `cargo xtask spec release`: the notes given with `--notes`, then every
change the comparison with the previous release found.
";

/// Puts `entry` first among the releases of `CHANGELOG.md` under `root` (creating it).
fn record_release(root: &Path, entry: &str) -> Result<()> {
    let path = root.join(CHANGELOG_PATH);
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CHANGELOG_PREAMBLE.to_owned(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let at = existing.find("\n## ").map_or(existing.len(), |i| i + 1);
    let (head, releases) = existing.split_at(at);
    let head = head.trim_end();
    let text = format!("{head}\n\n{}\n{releases}", entry.trim_end());
    std::fs::write(&path, text.trim_end().to_owned() + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Makes the current spec the released one, after [`Changelog::check_release`] passes, and
/// records the release (with `notes`, written by hand) first in `CHANGELOG.md`.
/// Returns the changelog of the release with the outcome.
pub fn release(root: &Path, notes: Option<&str>) -> Result<(Changelog, ReleaseOutcome)> {
    let specs = Specs::load(root)?;
    let changelog = specs.changelog()?;
    changelog
        .check_release()
        .context("the current spec cannot be released")?;
    let released_text = std::fs::read_to_string(root.join(RELEASED_PATH))?;
    if changelog.is_empty() && released_text == specs.current_text {
        return Ok((changelog, ReleaseOutcome::NothingToRelease));
    }
    let path = root.join(RELEASED_PATH);
    std::fs::write(&path, &specs.current_text)
        .with_context(|| format!("writing {}", path.display()))?;
    record_release(root, &changelog.release_entry(notes))?;
    let version = changelog.current.to_string();
    Ok((changelog, ReleaseOutcome::Released { path, version }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::workspace_root;

    /// A workspace with the real spec as both current and released (as 1.0.0, so that the
    /// versions below hold whatever version the spec is at), the current one edited by `edit`.
    fn scratch(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("openapi/released")).unwrap();
        let text = std::fs::read_to_string(workspace_root().join(SPEC_PATH)).unwrap();
        let mut released = crm_spec::parse(&text).unwrap();
        released["info"]["version"] = json!("1.0.0");
        std::fs::write(
            dir.path().join(RELEASED_PATH),
            serde_yaml::to_string(&released).unwrap(),
        )
        .unwrap();
        let mut current = released;
        edit(&mut current);
        std::fs::write(
            dir.path().join(SPEC_PATH),
            serde_yaml::to_string(&current).unwrap(),
        )
        .unwrap();
        dir
    }

    fn add_optional_field(doc: &mut Value) {
        doc["components"]["schemas"]["Contact"]["properties"]["nickname"] =
            json!({"type": "string", "nullable": true});
    }

    #[test]
    fn the_current_spec_passes_the_gate() {
        let specs = Specs::load(&workspace_root()).unwrap();
        let changelog = specs.changelog().unwrap();
        changelog
            .check()
            .unwrap_or_else(|e| panic!("{e}\n{}", changelog.to_markdown()));
    }

    #[test]
    fn release_refuses_a_breaking_change_without_a_major_version() {
        let dir = scratch(|d| {
            d["components"]["schemas"]["Contact"]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("emails");
        });
        let before = std::fs::read_to_string(dir.path().join(RELEASED_PATH)).unwrap();
        let err = release(dir.path(), None).unwrap_err();
        assert!(format!("{err:#}").contains("raise it to 2.0.0"), "{err:#}");
        let after = std::fs::read_to_string(dir.path().join(RELEASED_PATH)).unwrap();
        assert_eq!(before, after, "nothing was released");
    }

    #[test]
    fn release_needs_a_new_version_then_replaces_the_released_spec() {
        let dir = scratch(add_optional_field);
        let err = release(dir.path(), None).unwrap_err();
        assert!(format!("{err:#}").contains("at least 1.1.0"), "{err:#}");

        let dir = scratch(|d| {
            add_optional_field(d);
            d["info"]["version"] = json!("1.1.0");
        });
        let (changelog, outcome) =
            release(dir.path(), Some("The server already took it.")).unwrap();
        assert!(changelog.to_markdown().contains("### Additive (1)"));
        let history = std::fs::read_to_string(dir.path().join(CHANGELOG_PATH)).unwrap();
        assert!(history.starts_with("# Changelog\n"), "{history}");
        assert!(
            history.contains(
                "## 1.1.0\n\nThe server already took it.\n\nChanges from 1.0.0:\n\n### Breaking (0)"
            ),
            "{history}"
        );
        assert!(
            matches!(outcome, ReleaseOutcome::Released { ref version, .. } if version == "1.1.0")
        );
        let released = crm_spec::load(dir.path().join(RELEASED_PATH)).unwrap();
        assert_eq!(released["info"]["version"], "1.1.0");
        // Released again: nothing left to release, and the history is left alone.
        assert_eq!(
            release(dir.path(), None).unwrap().1,
            ReleaseOutcome::NothingToRelease
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CHANGELOG_PATH)).unwrap(),
            history
        );
        // The next release goes first, above the one before.
        let current = dir.path().join(crate::SPEC_PATH);
        let mut doc = crm_spec::load(&current).unwrap();
        doc["info"]["version"] = json!("1.1.1");
        doc["info"]["description"] = json!("Described anew.");
        std::fs::write(&current, serde_yaml::to_string(&doc).unwrap()).unwrap();
        release(dir.path(), None).unwrap();
        let newer = std::fs::read_to_string(dir.path().join(CHANGELOG_PATH)).unwrap();
        let (first, second) = (
            newer.find("## 1.1.1").unwrap(),
            newer.find("## 1.1.0").unwrap(),
        );
        assert!(first < second, "{newer}");
        assert!(
            newer.ends_with(&history[history.find("## 1.1.0").unwrap()..]),
            "{newer}"
        );
    }

    #[test]
    fn a_missing_released_spec_is_reported() {
        let dir = scratch(|_| {});
        std::fs::remove_file(dir.path().join(RELEASED_PATH)).unwrap();
        let err = Specs::load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("spec release"), "{err:#}");
    }
}
