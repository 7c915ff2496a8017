//! API keys: `sig_<prefix>_<secret>`. The prefix is a public lookup handle; only a SHA-256 hash of
//! the secret is stored, and it is compared in constant time.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// What a key may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}")),
        }
    }
}

const KEY_TAG: &str = "sig_";
const PREFIX_LEN: usize = 12;

/// A freshly generated key: the full secret string (shown once) and what is stored of it.
pub struct GeneratedKey {
    pub token: String,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
}

pub fn generate() -> GeneratedKey {
    let mut bytes = [0u8; 6 + 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    let prefix = hex(&bytes[..6]);
    let secret = URL_SAFE_NO_PAD.encode(&bytes[6..]);
    GeneratedKey {
        token: format!("{KEY_TAG}{prefix}_{secret}"),
        secret_hash: hash_secret(&secret),
        prefix,
    }
}

/// Splits a presented token into (prefix, secret) if it has the shape of a key.
pub fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_TAG)?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == PREFIX_LEN && !secret.is_empty()).then_some((prefix, secret))
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Equality whose time does not depend on where the inputs first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_splits_back_and_matches_its_hash() {
        let key = generate();
        let (prefix, secret) = split(&key.token).unwrap();
        assert_eq!(prefix, key.prefix);
        assert!(constant_time_eq(&hash_secret(secret), &key.secret_hash));
        assert!(!constant_time_eq(&hash_secret("other"), &key.secret_hash));
        assert_ne!(generate().token, key.token);
    }

    #[test]
    fn malformed_tokens_do_not_split() {
        for bad in [
            "",
            "sig_",
            "sig_abc_def",
            "xyz_0123456789ab_secret",
            "sig_0123456789ab_",
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn scopes_are_ordered() {
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
        assert_eq!("admin".parse::<Scope>(), Ok(Scope::Admin));
        assert!("root".parse::<Scope>().is_err());
    }
}
