//! The `Option<DateTime<Utc>>` fields of records, read and written like chrono's own serde
//! does, with a short path for the form the server stores (`2026-11-23T05:58:47.192671926Z`).
//! chrono's general parser and formatter took about a tenth of the time of a page of
//! contacts. Any other text, and any time this form cannot hold, goes through chrono, so the
//! values, the text and the errors are chrono's.

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub(super) fn serialize<S: Serializer>(
    value: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(time) => serializer.serialize_some(&Rfc3339(time)),
        None => serializer.serialize_none(),
    }
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(Option::<Read>::deserialize(deserializer)?.map(|read| read.0))
}

struct Rfc3339<'a>(&'a DateTime<Utc>);

impl Serialize for Rfc3339<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 30];
        match format(self.0, &mut text) {
            Some(len) => serializer
                .serialize_str(std::str::from_utf8(&text[..len]).expect("the form is ASCII")),
            None => self.0.serialize(serializer),
        }
    }
}

/// Writes `time` as chrono's serde does (RFC 3339, `SecondsFormat::AutoSi`, `Z`) for years
/// 0 to 9999 outside leap seconds; `None` for the others.
fn format(time: &DateTime<Utc>, out: &mut [u8; 30]) -> Option<usize> {
    let at = time.naive_utc();
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    let nano = at.nanosecond();
    if nano >= 1_000_000_000 {
        return None;
    }
    let mut len = 0;
    let mut put = |value: u32, digits: u32, after: Option<u8>| {
        for i in (0..digits).rev() {
            out[len] = b'0' + (value / 10u32.pow(i) % 10) as u8;
            len += 1;
        }
        if let Some(byte) = after {
            out[len] = byte;
            len += 1;
        }
    };
    put(year, 4, Some(b'-'));
    put(at.month(), 2, Some(b'-'));
    put(at.day(), 2, Some(b'T'));
    put(at.hour(), 2, Some(b':'));
    put(at.minute(), 2, Some(b':'));
    put(at.second(), 2, None);
    if nano != 0 {
        let (value, digits) = if nano.is_multiple_of(1_000_000) {
            (nano / 1_000_000, 3)
        } else if nano.is_multiple_of(1_000) {
            (nano / 1_000, 6)
        } else {
            (nano, 9)
        };
        out[len] = b'.';
        len += 1;
        let mut put = |value: u32, digits: u32| {
            for i in (0..digits).rev() {
                out[len] = b'0' + (value / 10u32.pow(i) % 10) as u8;
                len += 1;
            }
        };
        put(value, digits);
    }
    out[len] = b'Z';
    Some(len + 1)
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`; `None` for any other text or an impossible time
/// (chrono answers those).
fn parse(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(number(0..4)?).ok()?,
        number(5..7)?,
        number(8..10)?,
    )?;
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let nano = match b.len() - 20 {
        0 => 0,
        n @ 2..=10 if b[19] == b'.' => number(20..19 + n)? * 10u32.pow(10 - n as u32),
        _ => return None,
    };
    // A leap second (`:60`) is left to chrono.
    if second >= 60 {
        return None;
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nano)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

/// One time as chrono reads it, through [`parse`] when it can.
struct Read(DateTime<Utc>);

impl<'de> Deserialize<'de> for Read {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ReadVisitor).map(Read)
    }
}

struct ReadVisitor;

impl Visitor<'_> for ReadVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        // chrono's words, so an error reads the same.
        formatter.write_str("an RFC 3339 formatted date and time string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        match parse(value) {
            Some(time) => Ok(time),
            None => value
                .parse::<DateTime<FixedOffset>>()
                .map(|time| time.with_timezone(&Utc))
                .map_err(E::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_text(time: &DateTime<Utc>) -> String {
        serde_json::to_string(time).unwrap()
    }

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let base = NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(5, 8, 7)
            .unwrap()
            .and_utc();
        let years = [0, 7, 999, 1970, 9999, -1, 10000];
        let nanos = [
            0,
            1,
            7_000_000,
            120_000_000,
            192_671_000,
            192_671_926,
            999_999_999,
            1_500_000_000,
        ];
        for year in years {
            for nano in nanos {
                let Some(time) = base
                    .naive_utc()
                    .with_year(year)
                    .and_then(|t| t.with_nanosecond(nano))
                    .map(|t| t.and_utc())
                else {
                    continue;
                };
                let ours = serde_json::to_string(&Rfc3339(&time)).unwrap();
                assert_eq!(ours, chrono_text(&time), "{time:?}");
            }
        }
    }

    #[test]
    fn times_are_read_as_chrono_reads_them() {
        let texts = [
            "2026-11-23T05:58:47.192671926Z",
            "2026-11-23T05:58:47Z",
            "2026-11-23T05:58:47.1Z",
            "2026-11-23T05:58:47.123456Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "2026-11-23T05:58:47.1234567891Z",
            "2026-11-23T05:58:47.Z",
            "2026-11-23T05:58:60Z",
            "2016-12-31T23:59:60.5Z",
            "2026-02-30T05:58:47Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23 05:58:47Z",
            "2026-11-23t05:58:47z",
            "2026-11-23T05:58:47+02:00",
            "2026-11-23T05:58:47.5-00:30",
            "+2026-11-23T05:58:47Z",
            "2026-1-23T05:58:47Z",
            "２026-11-23T05:58:47Z",
            "",
            "not a time",
        ];
        for text in texts {
            let json = serde_json::to_string(text).unwrap();
            let chrono: Result<DateTime<Utc>, _> = serde_json::from_str(&json);
            let ours: Result<Read, _> = serde_json::from_str(&json);
            match (chrono, ours) {
                (Ok(c), Ok(o)) => assert_eq!(c, o.0, "{text}"),
                (Err(c), Err(o)) => assert_eq!(c.to_string(), o.to_string(), "{text}"),
                (c, o) => panic!("{text}: chrono {c:?}, ours {:?}", o.map(|r| r.0)),
            }
        }
        for other in ["12", "null", "[]"] {
            let chrono = serde_json::from_str::<DateTime<Utc>>(other).unwrap_err();
            let ours = serde_json::from_str::<Read>(other)
                .map(|r| r.0)
                .unwrap_err();
            assert_eq!(chrono.to_string(), ours.to_string(), "{other}");
        }
    }
}
