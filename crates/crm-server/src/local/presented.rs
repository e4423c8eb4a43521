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

/// Whether `presented`, the text of a record presented from `body`, makes `body` one to hand
/// over as it is: the same text, without `custom_fields`.
pub(crate) fn presents_as_itself(body: &str, presented: &str) -> bool {
    body == presented && !presented.contains("\"custom_fields\":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identical_texts_without_custom_fields_present_as_themselves() {
        let body = r#"{"id":"1","last_name":"L"}"#;
        assert!(presents_as_itself(body, body));
        assert!(!presents_as_itself(body, r#"{"last_name":"L","id":"1"}"#));
        let with = r#"{"id":"1","custom_fields":[{"name":"x","value":1}]}"#;
        assert!(!presents_as_itself(with, with));
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
