//! A linked account's provider credentials, and how they are kept: sealed with AES-256-GCM
//! under the server's secret key (`CRM_SECRET_KEY`), bound to the account they belong to.
//!
//! What is stored reads `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id is
//! the first eight bytes of the SHA-256 of the key, hex: it tells a wrong key from damaged
//! data without revealing the key. The account id is the additional authenticated data, so
//! credentials copied onto another account's row do not open.
//!
//! Nothing here prints a secret: [`Credentials`] and [`SecretKey`] have redacting `Debug`
//! implementations and no `Display`.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why credentials could not be read, sealed or opened. No variant carries a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error(
        "the secret key must be 32 random bytes, base64-encoded (44 characters); `crm-server admin generate-secret-key` prints one"
    )]
    BadKey,
    #[error(
        "the credentials of linked account {account} were sealed under secret key {stored}, not under the key given ({given})"
    )]
    WrongKey {
        account: String,
        stored: String,
        given: String,
    },
    #[error("the stored credentials of linked account {0} are damaged and cannot be opened")]
    Damaged(String),
    #[error("{0}")]
    Invalid(String),
}

/// The server's secret key: 32 bytes.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id())
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> SecretKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        SecretKey(bytes)
    }

    /// Reads a key written as base64 (standard or URL-safe, padding optional).
    pub fn parse(text: &str) -> Result<SecretKey, CredentialsError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| CredentialsError::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| CredentialsError::BadKey)?;
        Ok(SecretKey(bytes))
    }

    /// The key as `admin generate-secret-key` prints it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// A short public name of the key: the first 8 bytes of its SHA-256, hex.
    pub fn id(&self) -> String {
        Sha256::digest(self.0)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0).expect("a 32-byte key")
    }

    /// Seals `credentials` for linked account `account_id`.
    pub fn seal(&self, account_id: &str, credentials: &Credentials) -> String {
        let plain = serde_json::to_vec(credentials).expect("credentials serialise");
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: account_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption does not fail for this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1.{}.{}", self.id(), URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`seal`](Self::seal) stored for `account_id`.
    pub fn open(&self, account_id: &str, stored: &str) -> Result<Credentials, CredentialsError> {
        let damaged = || CredentialsError::Damaged(account_id.to_owned());
        let mut parts = stored.splitn(3, '.');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(damaged());
        };
        if key_id != self.id() {
            return Err(CredentialsError::WrongKey {
                account: account_id.to_owned(),
                stored: key_id.to_owned(),
                given: self.id(),
            });
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| damaged())?;
        if bytes.len() < 12 + 16 {
            return Err(damaged());
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| damaged())?;
        let plain = self
            .cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: account_id.as_bytes(),
                },
            )
            .map_err(|_| damaged())?;
        serde_json::from_slice(&plain).map_err(|_| damaged())
    }
}

/// The key id a stored value was sealed under, if it reads as sealed credentials.
pub fn sealed_key_id(stored: &str) -> Option<&str> {
    let mut parts = stored.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some("v1"), Some(id)) => Some(id),
        _ => None,
    }
}

/// How a linked account authenticates to its provider.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credentials {
    /// A token that does not expire: a HubSpot service key or private app token
    /// (`Authorization: Bearer`), or a Pipedrive API token (`x-api-token`).
    Token { token: String },
    /// OAuth: an access token that expires, and what renews it.
    OAuth(OAuthTokens),
}

/// OAuth tokens and the client that renews them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
    pub client_id: String,
    pub client_secret: String,
    /// Pipedrive: the company's API host, returned with the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_domain: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token { .. } => f.write_str("Credentials::Token(<redacted>)"),
            Credentials::OAuth(tokens) => write!(
                f,
                "Credentials::OAuth(<redacted>, expires_at: {})",
                tokens.expires_at
            ),
        }
    }
}

impl fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OAuthTokens(<redacted>, expires_at: {})",
            self.expires_at
        )
    }
}

impl Credentials {
    /// Every secret string these credentials hold (for redaction).
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Credentials::Token { token } => vec![token.as_str()],
            Credentials::OAuth(t) => vec![
                t.access_token.as_str(),
                t.refresh_token.as_str(),
                t.client_secret.as_str(),
            ],
        }
    }

    /// Reads a credentials file for `provider`, as the operator writes it:
    /// - HubSpot: `{"access_token"}` (a service key or private app token), or OAuth;
    /// - Pipedrive: `{"api_token"}`, or OAuth;
    /// - OAuth: `{"access_token", "refresh_token", "expires_at", "client_id",
    ///   "client_secret"}` (`expires_at` an RFC 3339 time or epoch seconds; Pipedrive may add
    ///   `api_domain`).
    ///
    /// The error names the fields, never their values.
    pub fn from_file_json(provider: &str, text: &str) -> Result<Credentials, CredentialsError> {
        let invalid = |why: String| CredentialsError::Invalid(why);
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            invalid(format!(
                "the credentials file is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let object = value
            .as_object()
            .ok_or_else(|| invalid("the credentials file must hold a JSON object".into()))?;
        let text_field = |name: &str| -> Result<Option<String>, CredentialsError> {
            match object.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(invalid(format!("`{name}` must be a non-empty string"))),
            }
        };
        let known: &[&str] = match provider {
            "hubspot" => &[
                "access_token",
                "refresh_token",
                "expires_at",
                "client_id",
                "client_secret",
            ],
            "pipedrive" => &[
                "api_token",
                "access_token",
                "refresh_token",
                "expires_at",
                "client_id",
                "client_secret",
                "api_domain",
            ],
            other => {
                return Err(invalid(format!(
                    "provider {other:?} takes no credentials file"
                )));
            }
        };
        if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown field `{unknown}` in the credentials file; {provider} takes {}",
                known.join(", ")
            )));
        }
        let refresh_token = text_field("refresh_token")?;
        if let Some(refresh_token) = refresh_token {
            let mut missing = Vec::new();
            let mut take = |name: &'static str| -> Result<String, CredentialsError> {
                Ok(text_field(name)?.unwrap_or_else(|| {
                    missing.push(name);
                    String::new()
                }))
            };
            let access_token = take("access_token")?;
            let client_id = take("client_id")?;
            let client_secret = take("client_secret")?;
            let expires_at = match object.get("expires_at") {
                Some(serde_json::Value::String(s)) => DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| invalid("`expires_at` must be an RFC 3339 time".into()))?,
                Some(serde_json::Value::Number(n)) => n
                    .as_i64()
                    .and_then(|s| DateTime::from_timestamp(s, 0))
                    .ok_or_else(|| invalid("`expires_at` must be epoch seconds".into()))?,
                _ => {
                    missing.push("expires_at");
                    DateTime::UNIX_EPOCH
                }
            };
            if !missing.is_empty() {
                return Err(invalid(format!(
                    "OAuth credentials (with `refresh_token`) also need {}",
                    missing.join(", ")
                )));
            }
            let api_domain = text_field("api_domain")?;
            return Ok(Credentials::OAuth(OAuthTokens {
                access_token,
                refresh_token,
                expires_at,
                client_id,
                client_secret,
                api_domain,
            }));
        }
        let token_field = if provider == "pipedrive" {
            "api_token"
        } else {
            "access_token"
        };
        match text_field(token_field)? {
            Some(token) => {
                let extra: Vec<&str> = object
                    .keys()
                    .map(String::as_str)
                    .filter(|k| *k != token_field)
                    .collect();
                if !extra.is_empty() {
                    return Err(invalid(format!(
                        "{} only belong to OAuth credentials, which also need `refresh_token`",
                        extra.join(", ")
                    )));
                }
                Ok(Credentials::Token { token })
            }
            None => Err(invalid(format!(
                "{provider} credentials need `{token_field}`, or OAuth fields with `refresh_token`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth() -> Credentials {
        Credentials::OAuth(OAuthTokens {
            access_token: "at-secret-1".into(),
            refresh_token: "rt-secret-2".into(),
            expires_at: DateTime::from_timestamp(2_000_000_000, 0).unwrap(),
            client_id: "client".into(),
            client_secret: "cs-secret-3".into(),
            api_domain: None,
        })
    }

    #[test]
    fn sealed_credentials_open_only_with_their_key_and_their_account() {
        let key = SecretKey::generate();
        let sealed = key.seal("acc-1", &oauth());
        for secret in oauth().secrets() {
            assert!(!sealed.contains(secret));
        }
        assert_eq!(key.open("acc-1", &sealed).unwrap(), oauth());
        assert_eq!(
            key.open("acc-2", &sealed),
            Err(CredentialsError::Damaged("acc-2".into()))
        );
        let other = SecretKey::generate();
        assert!(matches!(
            other.open("acc-1", &sealed),
            Err(CredentialsError::WrongKey { .. })
        ));
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.open("acc-1", std::str::from_utf8(&flipped).unwrap()),
            Err(CredentialsError::Damaged("acc-1".into()))
        );
        // Two seals of the same credentials differ (a fresh nonce each time).
        assert_ne!(key.seal("acc-1", &oauth()), sealed);
        assert_eq!(sealed_key_id(&sealed), Some(key.id().as_str()));
    }

    #[test]
    fn a_key_reads_back_from_its_text_and_nothing_else_is_a_key() {
        let key = SecretKey::generate();
        assert_eq!(SecretKey::parse(&key.to_base64()).unwrap().id(), key.id());
        assert_eq!(
            SecretKey::parse("c2hvcnQ=").unwrap_err(),
            CredentialsError::BadKey
        );
        assert_eq!(
            SecretKey::parse("not base64!").unwrap_err(),
            CredentialsError::BadKey
        );
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }

    #[test]
    fn credentials_files_are_read_per_provider_and_errors_never_repeat_values() {
        assert_eq!(
            Credentials::from_file_json("hubspot", r#"{"access_token":"pat-1"}"#).unwrap(),
            Credentials::Token {
                token: "pat-1".into()
            }
        );
        assert_eq!(
            Credentials::from_file_json("pipedrive", r#"{"api_token":"tok-9"}"#).unwrap(),
            Credentials::Token {
                token: "tok-9".into()
            }
        );
        let full = r#"{"access_token":"at-secret-1","refresh_token":"rt-secret-2","expires_at":"2033-05-18T03:33:20Z","client_id":"client","client_secret":"cs-secret-3"}"#;
        assert_eq!(
            Credentials::from_file_json("hubspot", full).unwrap(),
            oauth()
        );
        for (provider, text) in [
            ("hubspot", r#"{"api_token":"tok-9"}"#),
            ("pipedrive", r#"{"access_token":"tok-9"}"#),
            (
                "hubspot",
                r#"{"access_token":"at-secret-1","refresh_token":"rt-secret-2"}"#,
            ),
            (
                "hubspot",
                r#"{"access_token":"tok-9","client_secret":"cs-secret-3"}"#,
            ),
            ("hubspot", r#"["tok-9"]"#),
            ("hubspot", "tok-9"),
            ("local", r#"{"access_token":"tok-9"}"#),
        ] {
            let error = Credentials::from_file_json(provider, text)
                .unwrap_err()
                .to_string();
            for secret in ["tok-9", "at-secret-1", "rt-secret-2", "cs-secret-3"] {
                assert!(!error.contains(secret), "{error}");
            }
        }
        assert!(!format!("{:?}", oauth()).contains("secret"));
    }
}
