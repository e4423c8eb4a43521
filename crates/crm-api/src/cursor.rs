//! The envelope of the opaque `next` cursor: its version, its encoding and the 400 it answers.
//!
//! Every provider pages differently (a sequence number in our own store, an `after` token
//! at HubSpot, ...). Each puts its own position inside this one envelope, tagged with its
//! name, so a caller sees one cursor format and a cursor issued for one provider is never
//! read by another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;

const VERSION: &str = "v2";

/// Wraps a provider's `position` in the cursor handed to callers.
pub fn encode(provider: &str, position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{VERSION}:{provider}:{position}"))
}

/// Unwraps a cursor a caller sent back for `provider`, returning the position inside.
/// Anything this server did not issue for that provider is 400, naming `next`.
pub fn decode(token: &str, provider: &str) -> Result<String, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    // One spelling per cursor: a token with padding or other trailing bits re-encodes
    // differently, and was never issued.
    if URL_SAFE_NO_PAD.encode(&text) != token {
        return Err(invalid());
    }
    let rest = text
        .strip_prefix(VERSION)
        .and_then(|r| r.strip_prefix(':'))
        .and_then(|r| r.strip_prefix(provider))
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(invalid)?;
    Ok(rest.to_owned())
}

/// The answer to a cursor this server did not issue.
pub fn invalid() -> ApiError {
    ApiError::bad_request(
        "invalid next cursor: pass back the `next` of the previous page unchanged",
    )
    .with("parameter", "next")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_position() {
        for position in ["", "c:1:2", "abc==", "after/123"] {
            assert_eq!(
                decode(&encode("local", position), "local").unwrap(),
                position
            );
        }
    }

    #[test]
    fn refuses_what_it_did_not_issue() {
        let other_provider = encode("hubspot", "c:1:1");
        let old_version = URL_SAFE_NO_PAD.encode("c1:5");
        for bad in [
            "",
            "abc",
            "!!!",
            other_provider.as_str(),
            old_version.as_str(),
        ] {
            let err = decode(bad, "local").unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
        }
    }
}
