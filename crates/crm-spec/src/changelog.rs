//! Changelogs and the release gate: what changed between the last released document and
//! the current one, grouped by what it means for existing clients ([`Impact`]), and whether
//! `info.version` says so.
//!
//! The changes are [`compare()`](crate::compare())'s, with the released document as the
//! expected (older) one and the current document as the actual (newer) one.
//!
//! Two gates use it:
//! - [`Changelog::check`], for every change to the spec: a breaking change needs a higher
//!   major version than the released one, and the version never goes backwards. Additive and
//!   documentation changes pass whatever the version says, so work can go on between
//!   releases.
//! - [`Changelog::check_release`], for cutting a release: on top of `check`, a changed
//!   document needs a higher version, and an additive change at least a higher minor one.

use std::fmt::{self, Write as _};

use serde_json::Value;

use crate::{Comparison, Error, Impact, Result, SpecChange, compare};

/// An `info.version` of the form `MAJOR.MINOR.PATCH` (a `-pre` or `+build` suffix is
/// ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    /// Parses `MAJOR.MINOR.PATCH`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u64>().ok())
                .flatten()
        });
        let version = Version {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(version)
    }

    /// The `info.version` of an OpenAPI document.
    pub fn of(doc: &Value, which: &'static str) -> Result<Version> {
        let text = doc
            .pointer("/info/version")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Version::parse(text).ok_or_else(|| Error::BadVersion {
            which,
            version: text.to_owned(),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The changes from the released document to the current one.
#[derive(Debug, Clone)]
pub struct Changelog {
    /// The released document's `info.version`.
    pub released: Version,
    /// The current document's `info.version`.
    pub current: Version,
    comparison: Comparison,
}

impl Changelog {
    /// Compares `released` (older) with `current` (newer); both OpenAPI 3.0.
    pub fn between(released: &Value, current: &Value) -> Result<Changelog> {
        Ok(Changelog {
            released: Version::of(released, "released")?,
            current: Version::of(current, "current")?,
            comparison: compare(released, current)?,
        })
    }

    /// The changes of one impact, in the comparison's order.
    pub fn of_impact(&self, impact: Impact) -> impl Iterator<Item = &SpecChange> {
        self.comparison
            .changes()
            .iter()
            .filter(move |c| c.impact == impact)
    }

    /// Changes that can break an existing client.
    pub fn breaking(&self) -> impl Iterator<Item = &SpecChange> {
        self.of_impact(Impact::Breaking)
    }

    /// True iff the documents do not differ at all.
    pub fn is_empty(&self) -> bool {
        self.comparison.is_empty()
    }

    /// The whole comparison behind the changelog.
    pub fn comparison(&self) -> &Comparison {
        &self.comparison
    }

    /// The gate every change to the spec passes: breaking changes need a higher major
    /// version, and the version never goes backwards.
    pub fn check(&self) -> Result<()> {
        if self.current < self.released {
            return Err(Error::VersionWentBack {
                released: self.released.to_string(),
                current: self.current.to_string(),
            });
        }
        let breaking = self.breaking().count();
        if breaking > 0 && self.current.major <= self.released.major {
            return Err(Error::BreakingWithoutMajor {
                count: breaking,
                released: self.released.to_string(),
                current: self.current.to_string(),
                next_major: self.released.major + 1,
            });
        }
        Ok(())
    }

    /// The gate for cutting a release: [`check`](Self::check), and a changed document has a
    /// higher version than the released one, at least a higher minor one when something
    /// was added.
    pub fn check_release(&self) -> Result<()> {
        self.check()?;
        if self.is_empty() {
            return Ok(());
        }
        let raised_minor =
            (self.current.major, self.current.minor) > (self.released.major, self.released.minor);
        let needed = if self.of_impact(Impact::Additive).next().is_some() && !raised_minor {
            Some(format!(
                "{}.{}.0",
                self.released.major,
                self.released.minor + 1
            ))
        } else if self.current == self.released {
            Some(format!(
                "{}.{}.{}",
                self.released.major,
                self.released.minor,
                self.released.patch + 1
            ))
        } else {
            None
        };
        match needed {
            Some(at_least) => Err(Error::VersionNotRaised {
                current: self.current.to_string(),
                at_least,
            }),
            None => Ok(()),
        }
    }

    /// The changelog as Markdown: a heading, then the breaking, additive and documentation
    /// changes, each under its own heading.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## Changes from {} (released) to {} (current)\n",
            self.released, self.current
        );
        self.write_changes(&mut out);
        out
    }

    /// The entry of a release in `CHANGELOG.md`: the version as a heading, the release
    /// notes written by hand (what the lists cannot say), then the changes, grouped as in
    /// [`Changelog::to_markdown`].
    pub fn release_entry(&self, notes: Option<&str>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n", self.current);
        if let Some(notes) = notes.map(str::trim).filter(|n| !n.is_empty()) {
            let _ = writeln!(out, "{notes}\n");
        }
        let _ = writeln!(out, "Changes from {}:\n", self.released);
        self.write_changes(&mut out);
        out
    }

    fn write_changes(&self, out: &mut String) {
        if self.is_empty() {
            out.push_str("No changes.\n");
            return;
        }
        for (impact, heading) in [
            (Impact::Breaking, "Breaking"),
            (Impact::Additive, "Additive"),
            (Impact::Documentation, "Documentation"),
        ] {
            let changes: Vec<&SpecChange> = self.of_impact(impact).collect();
            let _ = writeln!(out, "### {heading} ({})\n", changes.len());
            if changes.is_empty() {
                out.push_str("None.\n\n");
                continue;
            }
            for change in changes {
                let _ = writeln!(out, "- {}: {}", place(&change.path), change.message);
            }
            out.push('\n');
        }
    }
}

/// A JSON pointer as a reader knows the place: `GET /unified/crm/contacts`, schema
/// `Contact`, with the rest of the pointer after it.
fn place(pointer: &str) -> String {
    let segments: Vec<String> = pointer
        .trim_start_matches('#')
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let rest = |from: usize| {
        let tail = segments.get(from..).unwrap_or_default().join("/");
        if tail.is_empty() {
            String::new()
        } else {
            format!(" (`{tail}`)")
        }
    };
    match segments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["paths", route, method, ..] if crate::pointer::METHODS.contains(method) => {
            format!("`{} {route}`{}", method.to_ascii_uppercase(), rest(3))
        }
        ["paths", route, ..] => format!("`{route}`{}", rest(2)),
        ["components", "schemas", name, ..] => format!("schema `{name}`{}", rest(3)),
        _ => format!("`{pointer}`"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_support::crm_yaml;

    const CONTACTS: &str = "/paths/~1unified~1crm~1contacts";

    /// The spec as if released as 1.0.0, so that the versions below are fixed whatever
    /// version the spec is at.
    fn base() -> Value {
        let mut doc = crm_yaml();
        set_version(&mut doc, "1.0.0");
        doc
    }

    fn edited(edit: impl FnOnce(&mut Value)) -> Value {
        let mut doc = base();
        edit(&mut doc);
        doc
    }

    fn set_version(doc: &mut Value, version: &str) {
        doc["info"]["version"] = json!(version);
    }

    fn remove_field(doc: &mut Value) {
        doc.pointer_mut("/components/schemas/Contact/properties")
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove("first_name");
    }

    fn require_parameter(doc: &mut Value) {
        *doc.pointer_mut("/components/parameters/Raw/required")
            .unwrap() = json!(true);
    }

    /// What the contact model's work looks like: a new optional field, a new optional
    /// parameter and a new operation.
    fn add_things(doc: &mut Value) {
        doc.pointer_mut("/components/schemas/Contact/properties")
            .and_then(Value::as_object_mut)
            .unwrap()
            .insert(
                "nickname".into(),
                json!({"type": "string", "nullable": true}),
            );
        let get = doc.pointer(&format!("{CONTACTS}/get")).unwrap().clone();
        doc.pointer_mut(&format!("{CONTACTS}/get/parameters"))
            .and_then(Value::as_array_mut)
            .unwrap()
            .push(json!({"name": "sort", "in": "query", "schema": {"type": "string"}}));
        let mut search = get;
        search["operationId"] = json!("crm_search_contacts");
        doc["paths"].as_object_mut().unwrap().insert(
            "/unified/crm/contacts/search".into(),
            json!({"get": search}),
        );
    }

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(
            Version::parse("1.2.3"),
            Some(Version {
                major: 1,
                minor: 2,
                patch: 3
            })
        );
        assert_eq!(Version::parse("2.0.0-rc.1").unwrap().major, 2);
        for bad in ["", "1", "1.2", "1.2.3.4", "v1.2.3", "1.x.3", "1..3"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(Version::parse("1.10.0") > Version::parse("1.9.9"));
        assert!(matches!(
            Version::of(&json!({"info": {"version": "one"}}), "current"),
            Err(Error::BadVersion { .. })
        ));
    }

    #[test]
    fn the_same_document_has_no_changes_and_passes() {
        let log = Changelog::between(&base(), &base()).unwrap();
        assert!(log.is_empty());
        log.check().unwrap();
        log.check_release().unwrap();
        assert!(log.to_markdown().contains("No changes."));
    }

    #[test]
    fn a_removed_field_is_breaking_and_trips_the_gate() {
        let log = Changelog::between(&base(), &edited(remove_field)).unwrap();
        assert!(log.breaking().count() > 0, "{}", log.to_markdown());
        let err = log.check().unwrap_err();
        assert!(
            matches!(err, Error::BreakingWithoutMajor { next_major: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("2.0.0"), "{err}");
    }

    #[test]
    fn a_parameter_made_required_is_breaking_and_trips_the_gate() {
        let log = Changelog::between(&base(), &edited(require_parameter)).unwrap();
        assert!(
            log.breaking()
                .any(|c| c.message.contains("'raw' was optional and is now required")),
            "{}",
            log.to_markdown()
        );
        assert!(log.check().is_err());
    }

    #[test]
    fn a_major_version_lets_a_breaking_change_through() {
        let current = edited(|d| {
            remove_field(d);
            require_parameter(d);
            set_version(d, "2.0.0");
        });
        let log = Changelog::between(&base(), &current).unwrap();
        log.check().unwrap();
        log.check_release().unwrap();
        // A minor bump is not enough.
        let current = edited(|d| {
            remove_field(d);
            set_version(d, "1.1.0");
        });
        assert!(
            Changelog::between(&base(), &current)
                .unwrap()
                .check()
                .is_err()
        );
    }

    #[test]
    fn additive_changes_pass_without_a_new_version() {
        let log = Changelog::between(&base(), &edited(add_things)).unwrap();
        assert_eq!(log.breaking().count(), 0, "{}", log.to_markdown());
        let additive: Vec<&SpecChange> = log.of_impact(Impact::Additive).collect();
        let says = |words: &str| additive.iter().any(|c| c.message.contains(words));
        assert!(
            says("object properties changed: added nickname"),
            "{}",
            log.to_markdown()
        );
        assert!(
            says("optional parameter 'sort' was added"),
            "{}",
            log.to_markdown()
        );
        assert!(
            says("crm_search_contacts was added"),
            "{}",
            log.to_markdown()
        );
        log.check().unwrap();
        // ... but a release of them needs a higher minor version.
        let err = log.check_release().unwrap_err();
        assert!(err.to_string().contains("1.1.0"), "{err}");
        let current = edited(|d| {
            add_things(d);
            set_version(d, "1.1.0");
        });
        Changelog::between(&base(), &current)
            .unwrap()
            .check_release()
            .unwrap();
    }

    #[test]
    fn a_new_required_property_is_not_additive() {
        let current = edited(|d| {
            let contact = d
                .pointer_mut("/components/schemas/CrmCreateContactRequestDto")
                .unwrap();
            contact["properties"]["nickname"] = json!({"type": "string"});
            contact["required"] = json!(["nickname"]);
        });
        let log = Changelog::between(&base(), &current).unwrap();
        assert!(log.check().is_err(), "{}", log.to_markdown());
        assert!(
            log.breaking()
                .any(|c| c.message.contains("properties changed: added nickname")),
            "{}",
            log.to_markdown()
        );
    }

    #[test]
    fn checks_beyond_drift_say_added_or_removed() {
        let header = json!({"X-Trace": {"schema": {"type": "string"}}});
        let with_header = edited(|d| {
            d.pointer_mut(&format!("{CONTACTS}/get/responses/200"))
                .unwrap()["headers"] = header.clone();
            d.pointer_mut("/components/securitySchemes")
                .and_then(Value::as_object_mut)
                .unwrap()
                .insert(
                    "apiKey".into(),
                    json!({"type": "apiKey", "in": "header", "name": "x-api-key"}),
                );
        });
        let added = Changelog::between(&base(), &with_header).unwrap();
        assert_eq!(added.breaking().count(), 0, "{}", added.to_markdown());
        assert_eq!(
            added.of_impact(Impact::Additive).count(),
            2,
            "{}",
            added.to_markdown()
        );
        added.check().unwrap();
        let removed = Changelog::between(&with_header, &base()).unwrap();
        assert_eq!(removed.breaking().count(), 2, "{}", removed.to_markdown());
        assert!(removed.check().is_err());
    }

    #[test]
    fn documentation_changes_are_grouped_and_need_only_a_patch_release() {
        let current = edited(|d| {
            *d.pointer_mut(&format!("{CONTACTS}/get/summary")).unwrap() = json!("Contacts");
        });
        let log = Changelog::between(&base(), &current).unwrap();
        assert!(log.of_impact(Impact::Documentation).count() > 0);
        assert_eq!(log.of_impact(Impact::Additive).count(), 0);
        log.check().unwrap();
        assert!(matches!(
            log.check_release(),
            Err(Error::VersionNotRaised { ref at_least, .. }) if at_least == "1.0.1"
        ));
    }

    #[test]
    fn the_version_never_goes_back() {
        let mut released = base();
        set_version(&mut released, "1.2.0");
        let log = Changelog::between(&released, &base()).unwrap();
        assert!(matches!(log.check(), Err(Error::VersionWentBack { .. })));
    }

    #[test]
    fn markdown_groups_changes_by_impact() {
        let current = edited(|d| {
            remove_field(d);
            add_things(d);
            *d.pointer_mut(&format!("{CONTACTS}/get/summary")).unwrap() = json!("Contacts");
        });
        let text = Changelog::between(&base(), &current).unwrap().to_markdown();
        let at = |heading: &str| {
            text.find(heading)
                .unwrap_or_else(|| panic!("{heading} missing:\n{text}"))
        };
        assert!(text.starts_with("## Changes from 1.0.0 (released) to 1.0.0 (current)"));
        let (breaking, additive, docs) = (
            at("### Breaking ("),
            at("### Additive ("),
            at("### Documentation ("),
        );
        assert!(breaking < additive && additive < docs, "{text}");
        assert!(
            text[additive..docs]
                .contains("- `GET /unified/crm/contacts`: A new, optional parameter 'sort'"),
            "{text}"
        );
        assert!(
            text[docs..].contains("- `GET /unified/crm/contacts` (`summary`): summary changed"),
            "{text}"
        );
        assert!(
            text[breaking..additive].contains("schema `Contact`"),
            "{text}"
        );
    }

    #[test]
    fn places_read_like_the_api() {
        assert_eq!(
            place("#/paths/~1unified~1crm~1contacts~1{id}/patch/requestBody"),
            "`PATCH /unified/crm/contacts/{id}` (`requestBody`)"
        );
        assert_eq!(
            place("#/components/schemas/Contact/properties/emails"),
            "schema `Contact` (`properties/emails`)"
        );
        assert_eq!(place("#/info"), "`#/info`");
    }
}
