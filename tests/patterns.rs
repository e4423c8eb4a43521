//! Every `pattern` the spec writes for a rule of the server's says exactly what the server's
//! own check says: the email addresses of a contact (`custom_fields::is_email`) and the names
//! that must not be blank (`rules::is_blank`).
//!
//! The patterns are read from `openapi/crm.yaml` and run with `regress`, an ECMAScript regex
//! engine (JSON Schema's dialect, and the one the generated client validates with), as
//! JSON Schema runs them: a match anywhere in the value. Each is compared with the server's
//! check on every string of up to five characters over an alphabet of the characters that
//! matter (separators, white space and control characters of several kinds, letters), and on
//! hand-picked addresses. The comparison is tested itself: patterns a little off disagree.

use crm_server::custom_fields::is_email;
use crm_server::rules::is_blank;
use serde_json::Value;

fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/crm.yaml"))
        .expect("openapi/crm.yaml");
    serde_yaml::from_str(&text).expect("the spec parses")
}

fn pointer<'a>(doc: &'a Value, at: &str) -> &'a str {
    doc.pointer(at)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {at}"))
}

/// The characters strings are built from: what the email rule looks at (`@`, `.`), white
/// space the server trims (ASCII, Latin-1, Unicode), control characters (C0, DEL, C1), and
/// ordinary letters inside and outside ASCII.
const ALPHABET: [char; 12] = [
    'a', 'é', '@', '.', ' ', '\t', '\u{b}', '\u{85}', '\u{a0}', '\u{2028}', '\u{7f}', '\u{3000}',
];

/// Every string of at most `len` characters of [`ALPHABET`].
fn strings(len: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..len {
        last = last
            .iter()
            .flat_map(|s| {
                ALPHABET.iter().map(move |c| {
                    let mut next = s.clone();
                    next.push(*c);
                    next
                })
            })
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

const ADDRESSES: &[&str] = &[
    "steve@apple.com",
    "first.last+tag@sub.example.org",
    "a@b.co",
    "a@b",
    "a@b.",
    "a@b.co.",
    "a@.b",
    "a@b..c",
    "@b.co",
    "a@@b.co",
    "a@b@c.de",
    "a b@c.de",
    "a@b.c\u{0}",
    "\u{feff}a@b.co",
    "名前@例え.jp",
    "a@b.c\u{200b}",
];

/// The strings on which `pattern` (matched anywhere, as JSON Schema does) and `server`
/// disagree, at most ten of them.
fn disagreements(pattern: &str, server: fn(&str) -> bool, samples: &[String]) -> Vec<String> {
    let regex = regress::Regex::new(pattern).expect("the pattern compiles as ECMAScript");
    samples
        .iter()
        .filter(|s| regex.find(s).is_some() != server(s))
        .take(10)
        .map(|s| {
            format!(
                "{s:?}: spec {}, server {}",
                regex.find(s).is_some(),
                server(s)
            )
        })
        .collect()
}

fn email_samples() -> Vec<String> {
    let mut samples = strings(5);
    samples.extend(ADDRESSES.iter().map(|s| (*s).to_owned()));
    samples
}

fn blank_samples() -> Vec<String> {
    // Every single character of the Basic Multilingual Plane and beyond a little, then
    // the short strings.
    let mut samples: Vec<String> = (0..=0x3100_u32)
        .chain([0xfeff, 0x1_f600])
        .filter_map(char::from_u32)
        .map(String::from)
        .collect();
    samples.extend(strings(3));
    samples
}

#[test]
fn every_email_pattern_of_the_spec_is_the_servers_rule() {
    let doc = spec();
    let places = [
        "/components/schemas/Contact/properties/emails/items/pattern",
        "/components/schemas/CrmCreateContactRequestDto/properties/emails/items/pattern",
        "/components/schemas/ContactEmailAddress/properties/email/pattern",
    ];
    let samples = email_samples();
    for at in places {
        let pattern = pointer(&doc, at);
        assert_eq!(pattern, crm_api::models::EMAIL, "{at}");
        let found = disagreements(pattern, is_email, &samples);
        assert!(
            found.is_empty(),
            "{at} disagrees with the server:\n{}",
            found.join("\n")
        );
    }
    println!("email pattern: {} strings, no disagreement", samples.len());
}

#[test]
fn every_not_blank_pattern_of_the_spec_is_the_servers_rule() {
    let doc = spec();
    let places = [
        "/components/schemas/CrmCreateContactRequestDto/properties/last_name/pattern",
        "/components/schemas/CrmCreateListRequestDto/properties/name/pattern",
        "/components/schemas/CrmCreateCustomFieldDefinitionRequestDto/properties/name/pattern",
        "/components/schemas/UnifiedCustomFields/properties/mappings/additionalProperties/pattern",
    ];
    let samples = blank_samples();
    let not_blank: fn(&str) -> bool = |s| !is_blank(s);
    for at in places {
        let pattern = pointer(&doc, at);
        assert_eq!(pattern, crm_api::models::NOT_BLANK, "{at}");
        let found = disagreements(pattern, not_blank, &samples);
        assert!(
            found.is_empty(),
            "{at} disagrees with the server:\n{}",
            found.join("\n")
        );
    }
    println!(
        "not-blank pattern: {} strings, no disagreement",
        samples.len()
    );
}

#[test]
fn patterns_a_little_off_are_caught() {
    let email = crm_api::models::EMAIL;
    let samples = email_samples();
    for (what, broken) in [
        (
            "control characters allowed",
            email.replace(r"\x00-\x20", r"\x09-\x20"),
        ),
        (
            "no-break space allowed",
            email.replace(r"\x7f-\xa0", r"\x7f-\x9f"),
        ),
        ("a second @ allowed", email.replacen("[^@", "[^", 1)),
        ("a trailing dot allowed", email.replace(")+$", ")+\\.?$")),
        ("unanchored", email.trim_start_matches('^').to_owned()),
    ] {
        assert_ne!(broken, email, "{what}: the edit changed nothing");
        assert!(
            !disagreements(&broken, is_email, &samples).is_empty(),
            "{what}: not caught"
        );
    }
    let not_blank: fn(&str) -> bool = |s| !is_blank(s);
    let blank = crm_api::models::NOT_BLANK;
    let samples = blank_samples();
    for (what, broken) in [
        (
            "line separator counted as text",
            blank.replace(r"\u2028", ""),
        ),
        (
            "vertical tab counted as text",
            blank.replace(r"\t-\r", r"\t\n\r"),
        ),
        (
            "zero-width no-break space counted as blank",
            blank.replace(r"\u3000", r"\u3000\ufeff"),
        ),
    ] {
        assert_ne!(broken, blank, "{what}: the edit changed nothing");
        assert!(
            !disagreements(&broken, not_blank, &samples).is_empty(),
            "{what}: not caught"
        );
    }
}
