//! Sealing what the shared store holds (ACME account keys, certificate keys) with the operator's
//! key: ChaCha20-Poly1305 from ring, a random nonce per value, and the store key name as
//! associated data so a sealed value cannot be moved to another name.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Seals and opens values; without a key (one edge, in-process store) values pass as they are.
pub struct Sealer {
    key: Option<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "a value in the certificate store cannot be opened: it was sealed with another key \
         (check that every edge has the same --cert-store-key) or it is damaged"
    )]
    Open,
    #[error("the system random generator failed")]
    Random,
}

const MAGIC: &[u8] = b"wsv1";

impl Sealer {
    pub fn new(key: Option<[u8; 32]>) -> Sealer {
        Sealer {
            // A 32-byte key always makes a ChaCha20-Poly1305 key.
            key: key.and_then(|k| {
                UnboundKey::new(&CHACHA20_POLY1305, &k)
                    .ok()
                    .map(LessSafeKey::new)
            }),
            rng: SystemRandom::new(),
        }
    }

    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let Some(key) = &self.key else {
            return Ok(plain.to_vec());
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut data = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut data,
        )
        .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + data.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }

    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let Some(key) = &self.key else {
            return Ok(sealed.to_vec());
        };
        let rest = sealed.strip_prefix(MAGIC).ok_or(SealError::Open)?;
        if rest.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, data) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut data = data.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_name() {
        let sealer = Sealer::new(Some([7; 32]));
        let sealed = sealer.seal("cert:a", b"secret key").expect("seal");
        assert!(!sealed.windows(10).any(|w| w == b"secret key"));
        assert_eq!(sealer.open("cert:a", &sealed).expect("open"), b"secret key");
        assert_eq!(sealer.open("cert:b", &sealed), Err(SealError::Open));
        let other = Sealer::new(Some([8; 32]));
        assert_eq!(other.open("cert:a", &sealed), Err(SealError::Open));
        assert_eq!(sealer.open("cert:a", b"wsv1short"), Err(SealError::Open));
    }
}
