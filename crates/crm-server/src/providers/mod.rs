//! Linked accounts of real CRMs: their credentials, sealed at rest ([`credentials`]), the
//! store of those accounts ([`accounts`]), calling a provider well ([`call`]), what the
//! connectors share ([`common`]), and the connectors ([`hubspot`], [`pipedrive`]).

pub mod accounts;
pub mod call;
pub mod common;
pub mod credentials;
pub mod hubspot;
pub mod pipedrive;

pub use accounts::{RemoteAccount, Vault, VaultError};
pub use credentials::{Credentials, CredentialsError, OAuthTokens, SecretKey};
