//! Required-encryption-context materials manager (spec `framework/required-encryption-context-cmm.md`).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::{DecryptMaterialsRequest, EncryptionMaterialsRequest, MaterialsManager};
use crate::error::{Error, Result};
use crate::materials::{DecryptionMaterials, EncryptionMaterials};

/// Makes a set of encryption-context keys mandatory and authenticated-only: on encrypt they must be
/// in the caller's context and are left out of the header; on decrypt the caller must supply them.
#[derive(Debug, Clone)]
pub struct RequiredEncryptionContextCmm {
    inner: Arc<dyn MaterialsManager>,
    required: BTreeSet<String>,
}

impl RequiredEncryptionContextCmm {
    /// Wraps `inner`, requiring `keys`.
    pub fn new(inner: Arc<dyn MaterialsManager>, keys: impl IntoIterator<Item = impl Into<String>>) -> Result<Self> {
        let required: BTreeSet<String> = keys.into_iter().map(Into::into).collect();
        if required.is_empty() {
            return Err(Error::InvalidConfig("a required-encryption-context CMM needs at least one key".into()));
        }
        Ok(Self { inner, required })
    }

    fn missing<'a>(&'a self, present: impl Fn(&str) -> bool + 'a) -> Vec<&'a str> {
        self.required.iter().map(String::as_str).filter(|k| !present(k)).collect()
    }
}

#[async_trait]
impl MaterialsManager for RequiredEncryptionContextCmm {
    async fn get_encryption_materials(&self, mut request: EncryptionMaterialsRequest) -> Result<EncryptionMaterials> {
        let missing = self.missing(|k| request.encryption_context.contains_key(k));
        if !missing.is_empty() {
            return Err(Error::InvalidEncryptionContext(format!("required key(s) {missing:?} are missing")));
        }
        request.required_encryption_context_keys.extend(self.required.iter().cloned());
        let materials = self.inner.get_encryption_materials(request).await?;
        if !self.required.is_subset(materials.required_encryption_context_keys()) {
            return Err(Error::InvalidMaterials("the underlying CMM dropped required encryption context keys".into()));
        }
        Ok(materials)
    }

    async fn decrypt_materials(&self, request: DecryptMaterialsRequest<'_>) -> Result<DecryptionMaterials> {
        let missing = match request.reproduced_encryption_context {
            Some(ec) => self.missing(|k| ec.contains_key(k)),
            None => self.required.iter().map(String::as_str).collect(),
        };
        if !missing.is_empty() {
            return Err(Error::EncryptionContextMismatch(format!(
                "required key(s) {missing:?} were not supplied with the decrypt request"
            )));
        }
        let materials = self.inner.decrypt_materials(request).await?;
        let missing = self.missing(|k| materials.encryption_context().contains_key(k));
        if !missing.is_empty() {
            return Err(Error::InvalidMaterials(format!("decryption materials lack required key(s) {missing:?}")));
        }
        Ok(materials)
    }
}
