//! Secrets the database keeps but must not show: webhook signing keys are stored sealed
//! (ChaCha20-Poly1305, a random nonce each time, the row's id as associated data) with a key
//! that is not in the database, so a dump alone does not reveal them.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

use crate::Fatal;

/// The key that seals secrets; never printed.
pub struct Sealer(LessSafeKey);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key");
        Sealer(LessSafeKey::new(key))
    }

    /// The key from `SIGNALS_WEBHOOK_KEY` (64 hex digits) when given, else from the file
    /// `path`, made (0600, 32 random bytes as hex) when it does not exist yet.
    pub fn load(configured: Option<&str>, path: &Path) -> Result<Sealer, Fatal> {
        let parse = |text: &str, from: &str| -> Result<Sealer, Fatal> {
            let text = text.trim();
            let bytes: Option<Vec<u8>> = (text.len() == 64 && text.is_ascii())
                .then(|| {
                    (0..32)
                        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                        .collect()
                })
                .flatten();
            match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(key) => Ok(Sealer::new(&key)),
                None => Err(Fatal(format!(
                    "{from} must be 64 hexadecimal digits (32 bytes)"
                ))),
            }
        };
        if let Some(text) = configured {
            return parse(text, "SIGNALS_WEBHOOK_KEY");
        }
        match std::fs::read_to_string(path) {
            Ok(text) => parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).expect("the operating system's random source failed");
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| Fatal(format!("cannot make {}: {e}", dir.display())))?;
                }
                match write_new_private(path, &hex) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "made a new webhook key");
                        Ok(Sealer::new(&key))
                    }
                    // Another instance starting at the same moment made it first: theirs holds.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path)
                            .map_err(|e| Fatal(format!("cannot read {}: {e}", path.display())))?;
                        parse(&text, &path.display().to_string())
                    }
                    Err(e) => Err(Fatal(format!("cannot write {}: {e}", path.display()))),
                }
            }
            Err(e) => Err(Fatal(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// `secret` sealed for the row `id`: the nonce, then the ciphertext and its tag.
    pub fn seal(&self, id: &uuid::Uuid, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let mut sealed = secret.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.as_bytes()),
                &mut sealed,
            )
            .expect("sealing a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// The secret of row `id`; `None` when it was sealed with another key or for another row.
    pub fn open(&self, id: &uuid::Uuid, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(id.as_bytes()), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Makes `path` with mode 0600 from the start holding `text`, whole or not at all: written to a
/// file of its own first, then linked to `path`, which fails with `AlreadyExists` if another
/// process made `path` meanwhile (a reader never sees it half written). Where the file system
/// has no hard links, `path` is created directly (still failing if it exists).
fn write_new_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::{ErrorKind, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let create = |path: &Path| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.new", uuid::Uuid::now_v7().simple()));
    let draft = std::path::PathBuf::from(name);
    let linked = create(&draft).and_then(|()| std::fs::hard_link(&draft, path));
    let _ = std::fs::remove_file(&draft);
    match linked {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => create(path)?,
        linked => linked?,
    }
    // The new name survives a crash: the key may seal secrets at once.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_64_bytes_that_are_not_hex_digits_is_refused_with_a_message() {
        let nowhere = std::path::Path::new("/nonexistent/webhook.key");
        for key in ["é".repeat(32), "g".repeat(64), "0".repeat(63)] {
            assert!(Sealer::load(Some(&key), nowhere).is_err(), "{key}");
        }
        assert!(Sealer::load(Some(&"0a".repeat(32)), nowhere).is_ok());
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_for_its_row() {
        let sealer = Sealer::new(&[7; 32]);
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let sealed = sealer.seal(&a, b"the secret");
        assert!(!sealed.windows(10).any(|w| w == b"the secret"));
        assert_eq!(
            sealer.open(&a, &sealed).as_deref(),
            Some(&b"the secret"[..])
        );
        assert_eq!(sealer.open(&b, &sealed), None);
        assert_eq!(Sealer::new(&[8; 32]).open(&a, &sealed), None);
        assert_ne!(
            sealer.seal(&a, b"the secret"),
            sealed,
            "a new nonce each time"
        );
    }

    #[test]
    fn instances_starting_together_make_one_key_file_and_all_use_it() {
        let dir = std::env::temp_dir().join(format!("signals-key-{}", uuid::Uuid::now_v7()));
        let path = dir.join("webhook.key");
        let start = std::sync::Barrier::new(8);
        let sealers: Vec<Sealer> = std::thread::scope(|s| {
            let loads: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        Sealer::load(None, &path)
                    })
                })
                .collect();
            loads
                .into_iter()
                .map(|l| l.join().unwrap().expect("every instance starts"))
                .collect()
        });
        let id = uuid::Uuid::now_v7();
        let sealed = sealers[0].seal(&id, b"shared");
        for sealer in &sealers {
            assert_eq!(sealer.open(&id, &sealed).as_deref(), Some(&b"shared"[..]));
        }
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the key file stays");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_key_file_is_made_private_once_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("signals-key-{}", uuid::Uuid::now_v7()));
        let path = dir.join("webhook.key");
        let id = uuid::Uuid::now_v7();
        let sealed = Sealer::load(None, &path).unwrap().seal(&id, b"x");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            Sealer::load(None, &path)
                .unwrap()
                .open(&id, &sealed)
                .unwrap(),
            b"x"
        );
        assert!(Sealer::load(Some("zz"), &path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
