//! Default materials manager (spec `framework/default-cmm.md`).

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;

use super::{DecryptMaterialsRequest, EncryptionMaterialsRequest, MaterialsManager};
use crate::context::PUBLIC_KEY_FIELD;
use crate::crypto::Backend;
use crate::error::{Error, Result};
use crate::keyring::Keyring;
use crate::materials::{DecryptionMaterials, EncryptionMaterials, SigningKey, VerificationKey};

/// Wraps a keyring: picks the suite, adds the signing key for signed suites, and reconciles the
/// reproduced encryption context on decrypt.
#[derive(Debug, Clone)]
pub struct DefaultCmm {
    keyring: Arc<dyn Keyring>,
    backend: Backend,
}

impl DefaultCmm {
    /// A default CMM over `keyring`.
    pub fn new(keyring: impl Keyring + 'static) -> Self {
        Self::from_arc(Arc::new(keyring))
    }

    /// A default CMM over a shared keyring.
    pub fn from_arc(keyring: Arc<dyn Keyring>) -> Self {
        Self { keyring, backend: Backend::default() }
    }

    /// Uses `backend` for signing-key generation and signature verification keys.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
}

#[async_trait]
impl MaterialsManager for DefaultCmm {
    async fn get_encryption_materials(&self, request: EncryptionMaterialsRequest) -> Result<EncryptionMaterials> {
        let suite = request.suite.unwrap_or(request.commitment_policy.default_suite());
        request.commitment_policy.check_encrypt(suite)?;
        let mut ec = request.encryption_context;
        if ec.contains_key(PUBLIC_KEY_FIELD) {
            return Err(Error::InvalidEncryptionContext(format!("{PUBLIC_KEY_FIELD} is reserved for the SDK")));
        }
        let signing_key = match suite.signature() {
            Some(curve) => {
                let key = SigningKey::generate(curve, self.backend)?;
                ec.insert(
                    PUBLIC_KEY_FIELD,
                    base64::engine::general_purpose::STANDARD.encode(key.compressed_public_key()),
                );
                Some(key)
            }
            None => None,
        };
        let mut materials = EncryptionMaterials::new(suite, ec)
            .with_required_encryption_context_keys(request.required_encryption_context_keys);
        if let Some(key) = signing_key {
            materials.set_signing_key(key);
        }
        let materials = self.keyring.on_encrypt(materials).await?;
        if materials.data_key().is_none() || materials.encrypted_data_keys().is_empty() {
            return Err(Error::InvalidMaterials("the keyring returned no data key or no encrypted data key".into()));
        }
        Ok(materials)
    }

    async fn decrypt_materials(&self, request: DecryptMaterialsRequest<'_>) -> Result<DecryptionMaterials> {
        let suite = request.suite;
        request.commitment_policy.check_decrypt(suite)?;
        let stored = request.encryption_context;
        let verification_key = match (suite.signature(), stored.get(PUBLIC_KEY_FIELD)) {
            (Some(curve), Some(b64)) => {
                let point = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| {
                    Error::InvalidMaterials(format!("{PUBLIC_KEY_FIELD} in the encryption context is not valid base64"))
                })?;
                Some(VerificationKey::from_sec1(curve, &point, self.backend)?)
            }
            (Some(_), None) => {
                return Err(Error::InvalidMaterials(format!(
                    "suite {suite} is signed but the encryption context has no {PUBLIC_KEY_FIELD}"
                )))
            }
            (None, Some(_)) => {
                return Err(Error::InvalidMaterials(format!(
                    "suite {suite} is unsigned but the encryption context carries {PUBLIC_KEY_FIELD}"
                )))
            }
            (None, None) => None,
        };
        let mut materials = DecryptionMaterials::new(suite, stored.clone());
        if let Some(reproduced) = request.reproduced_encryption_context {
            for (k, v) in reproduced.iter() {
                match stored.get(k) {
                    Some(sv) if sv == v => {}
                    Some(_) => {
                        return Err(Error::EncryptionContextMismatch(format!(
                            "the message's encryption context has a different value for key {k:?} than the one required"
                        )))
                    }
                    None => materials.add_required_pair(k.to_owned(), v.to_owned()),
                }
            }
        }
        if let Some(key) = verification_key {
            materials.set_verification_key(key);
        }
        let materials = self.keyring.on_decrypt(materials, request.encrypted_data_keys).await?;
        if materials.data_key().is_none() {
            return Err(Error::InvalidMaterials("the keyring returned no data key".into()));
        }
        Ok(materials)
    }
}
