//! The one cursor format: an opaque, URL-safe token naming the last record of a page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crm_api::ApiError;

const VERSION: &str = "c1";

/// The position after which the next page starts: the `seq` of the last record served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub after_seq: i64,
}

impl Cursor {
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{VERSION}:{}", self.after_seq))
    }

    /// Decodes a cursor a caller sent back; anything this server did not issue is 400.
    pub fn decode(token: &str) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::bad_request(
                "invalid next cursor: pass back the `next` of the previous page unchanged",
            )
            .with("parameter", "next")
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let (version, seq) = text.split_once(':').ok_or_else(invalid)?;
        if version != VERSION {
            return Err(invalid());
        }
        // One spelling per position: `+5` or `05` were never issued, so they are refused.
        let after_seq = seq
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0 && s.to_string() == seq)
            .ok_or_else(invalid)?;
        Ok(Cursor { after_seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for seq in [0, 1, 42, i64::MAX] {
            let c = Cursor { after_seq: seq };
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn rejects_what_it_did_not_issue() {
        for bad in [
            "",
            "abc",
            "!!!",
            &URL_SAFE_NO_PAD.encode("c1:-5"),
            &URL_SAFE_NO_PAD.encode("c2:5"),
            &URL_SAFE_NO_PAD.encode("c1:x"),
        ] {
            let err = Cursor::decode(bad).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
        }
    }
}
