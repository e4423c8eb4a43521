//! Small helpers both doubles use.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use rand::Rng as _;

/// Now, cut to whole milliseconds.
pub(crate) fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.timestamp_millis_opt(now.timestamp_millis())
        .single()
        .unwrap_or(now)
}

/// `2026-09-01T12:00:00.123Z`
pub(crate) fn fmt_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `2026-09-01T12:00:00Z`
pub(crate) fn fmt_secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A date given as epoch milliseconds (a string of digits) or as an RFC 3339 date-time.
pub(crate) fn parse_epoch_ms_or_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return s.parse().ok();
    }
    if let Some(t) = parse_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    // A bare date, as HubSpot date properties hold.
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_millis())
}

pub(crate) fn correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `n` random lowercase hex characters.
pub(crate) fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

/// A plausible check of an e-mail address: one `@`, something before it, a dotted domain
/// after it, no white space.
pub(crate) fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

pub(crate) fn encode_cursor(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

pub(crate) fn decode_cursor(s: &str) -> Option<serde_json::Value> {
    let bytes = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Reason phrase of a status, for error bodies.
pub(crate) fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(valid_email("ann@example.com"));
        assert!(!valid_email("ann@example"));
        assert!(!valid_email("ann example@x.com"));
        assert!(!valid_email("@x.com"));
        assert!(!valid_email("a@b@x.com"));
    }

    #[test]
    fn dates_in_either_form() {
        assert_eq!(
            parse_epoch_ms_or_rfc3339("1700000000000"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_epoch_ms_or_rfc3339("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_epoch_ms_or_rfc3339("yesterday"), None);
    }

    #[test]
    fn cursors_round_trip() {
        let v = serde_json::json!({"o": 5});
        assert_eq!(decode_cursor(&encode_cursor(&v)), Some(v));
        assert_eq!(decode_cursor("!!"), None);
    }
}
