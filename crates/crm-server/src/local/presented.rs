//! Stored bodies that are already their own presentation.
//!
//! A record written by this server is stored as the JSON its model writes, so presenting it
//! (reading it into the model, then writing the model out) most often gives back the very
//! text that was stored: about half of a page's server time went into that round trip. The
//! first time a body is presented, its text is compared with what presenting it wrote; when
//! they are the same and the record holds no `custom_fields` (the one part a mapping or
//! `include` changes), the body is remembered, by kind and a hash of its text, and later pages
//! hand it over as it is ([`crm_api::service::Listed::Presented`]).
//!
//! What is remembered is a fact about a text, not about a record: a write gives the record a
//! new text, which is checked afresh. Nothing here can serve another record's data: a page
//! hands over only the bodies its own query read.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

/// How many bodies are remembered at most; when full, all are forgotten and learned again.
const KEPT: usize = 65_536;

/// A body's kind and text, hashed, with its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key(u64, usize);

impl Key {
    pub(crate) fn of(kind: &str, body: &str) -> Key {
        let mut hasher = DefaultHasher::new();
        kind.hash(&mut hasher);
        body.hash(&mut hasher);
        Key(hasher.finish(), body.len())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Presented {
    known: Mutex<HashSet<Key>>,
}

impl Presented {
    /// Whether each of `keys` is a body known to present as itself.
    pub(crate) fn known(&self, keys: &[Key]) -> Vec<bool> {
        let known = self.known.lock().expect("not poisoned");
        keys.iter().map(|key| known.contains(key)).collect()
    }

    /// Whether `key` is a body known to present as itself.
    pub(crate) fn knows(&self, key: Key) -> bool {
        self.known.lock().expect("not poisoned").contains(&key)
    }

    /// Remembers `keys` as bodies that present as themselves.
    pub(crate) fn learn(&self, keys: &[Key]) {
        if keys.is_empty() {
            return;
        }
        let mut known = self.known.lock().expect("not poisoned");
        if known.len() + keys.len() > KEPT {
            known.clear();
        }
        known.extend(keys.iter().copied());
    }
}

/// Whether `presented`, the text of a record presented from `body` whose `etag` field is
/// `etag`, makes `body` one to hand over as it is: the same text, without `custom_fields`, in
/// which [`etag`] finds the record's etag.
pub(crate) fn presents_as_itself(body: &str, presented: &str, etag: Option<&str>) -> bool {
    body == presented && !presented.contains("\"custom_fields\":") && self::etag(body) == etag
}

/// The `etag` of a record's text, read without parsing it: the value of the last `"etag":`
/// member. A model writes `etag` after its free-form objects (`remote_fields`), and a quote
/// inside a string is escaped, so in a text that [`presents_as_itself`] (which checks this
/// against the parsed record) the last such member is the record's own.
pub(crate) fn etag(body: &str) -> Option<&str> {
    const MEMBER: &str = "\"etag\":\"";
    let start = body.rfind(MEMBER)? + MEMBER.len();
    let value = &body[start..];
    let value = &value[..value.find('"')?];
    (!value.contains('\\')).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identical_texts_without_custom_fields_present_as_themselves() {
        let body = r#"{"id":"1","last_name":"L"}"#;
        assert!(presents_as_itself(body, body, None));
        assert!(!presents_as_itself(
            body,
            r#"{"last_name":"L","id":"1"}"#,
            None
        ));
        let with = r#"{"id":"1","custom_fields":[{"name":"x","value":1}]}"#;
        assert!(!presents_as_itself(with, with, None));
        let versioned = r#"{"id":"1","etag":"e-1"}"#;
        assert!(presents_as_itself(versioned, versioned, Some("e-1")));
        assert!(!presents_as_itself(versioned, versioned, Some("e-2")));
        assert!(!presents_as_itself(versioned, versioned, None));
    }

    #[test]
    fn the_etag_is_the_records_own_not_a_nested_one() {
        let body = r#"{"id":"1","remote_fields":{"etag":"nested","x":"a \"etag\":\"q\""},"etag":"own","updated_at":"2024-01-01T00:00:00Z"}"#;
        assert_eq!(etag(body), Some("own"));
        // Without its own, a nested one would be found: such a text is never handed over,
        // since the record's etag (none) differs.
        let nested_only = r#"{"id":"1","remote_fields":{"etag":"nested"}}"#;
        assert_eq!(etag(nested_only), Some("nested"));
        assert!(!presents_as_itself(nested_only, nested_only, None));
        assert_eq!(etag(r#"{"etag":"a\"b"}"#), None);
    }

    #[test]
    fn bodies_are_remembered_by_kind_and_text() {
        let presented = Presented::default();
        let body = r#"{"id":"1"}"#;
        presented.learn(&[Key::of("contacts", body)]);
        assert_eq!(
            presented.known(&[
                Key::of("contacts", body),
                Key::of("accounts", body),
                Key::of("contacts", r#"{"id":"2"}"#),
            ]),
            [true, false, false]
        );
    }

    #[test]
    fn a_full_memory_starts_again() {
        let presented = Presented::default();
        let first = Key::of("contacts", "first");
        presented.learn(&[first]);
        let many: Vec<Key> = (0..KEPT)
            .map(|i| Key::of("contacts", &i.to_string()))
            .collect();
        presented.learn(&many);
        assert_eq!(presented.known(&[first, many[0]]), [false, true]);
        assert!(presented.known.lock().unwrap().len() <= KEPT);
    }
}
