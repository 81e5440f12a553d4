//! Multi-keyring (spec `framework/multi-keyring.md`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{ensure_no_data_key, Keyring};
use crate::error::{EdkAttempt, EdkFailure, EdkOutcome, Error, Result, UnwrapReport};
use crate::materials::{DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};

/// A generator keyring plus children: encrypt wraps the data key under all of them; decrypt tries
/// the generator, then each child, and returns the first success.
#[derive(Debug, Clone)]
pub struct MultiKeyring {
    generator: Option<Arc<dyn Keyring>>,
    children: Vec<Arc<dyn Keyring>>,
}

impl MultiKeyring {
    /// A multi-keyring; with no children a generator is required.
    pub fn new(generator: Option<Arc<dyn Keyring>>, children: Vec<Arc<dyn Keyring>>) -> Result<Self> {
        if generator.is_none() && children.is_empty() {
            return Err(Error::InvalidConfig("a multi-keyring needs a generator or at least one child keyring".into()));
        }
        Ok(Self { generator, children })
    }

    /// Generator first, then children.
    fn all(&self) -> impl Iterator<Item = &Arc<dyn Keyring>> {
        self.generator.iter().chain(self.children.iter())
    }
}

#[async_trait]
impl Keyring for MultiKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        match &self.generator {
            Some(generator) => {
                if materials.data_key().is_some() {
                    return Err(Error::InvalidMaterials(
                        "a multi-keyring with a generator was given materials that already hold a data key".into(),
                    ));
                }
                materials = generator.on_encrypt(materials).await?;
                if materials.data_key().is_none() {
                    return Err(Error::Keyring {
                        action: "generate the data key",
                        reason: "the generator keyring returned no data key".into(),
                        retryable: false,
                    });
                }
            }
            None if materials.data_key().is_none() => {
                return Err(Error::InvalidMaterials(
                    "a multi-keyring without a generator needs materials that already hold a data key".into(),
                ))
            }
            None => {}
        }
        for child in &self.children {
            materials = child.on_encrypt(materials).await?;
        }
        Ok(materials)
    }

    async fn on_decrypt(
        &self,
        materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        ensure_no_data_key(&materials)?;
        let mut report = UnwrapReport {
            present: edks.iter().map(|e| (e.provider_id.clone(), e.provider_info_lossy())).collect(),
            ..UnwrapReport::default()
        };
        for keyring in self.all() {
            match keyring.on_decrypt(materials.fork(), edks).await {
                Ok(m) => return Ok(m),
                Err(Error::NoDecryptableDataKey(r)) => report.merge(*r),
                Err(other) => report.attempts.push(EdkAttempt {
                    keyring: format!("{keyring:?}"),
                    index: 0,
                    provider_id: String::new(),
                    provider_info: String::new(),
                    outcome: EdkOutcome::Failed(EdkFailure::Keyring {
                        error: other.to_string(),
                        retryable: other.is_retryable(),
                    }),
                }),
            }
        }
        Err(Error::NoDecryptableDataKey(Box::new(report)))
    }
}
