//! KMS discovery keyrings (spec `framework/aws-kms/aws-kms-discovery-keyring.md`,
//! `aws-kms-mrk-discovery-keyring.md`).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::arn::KmsArn;
use super::edk::filter_then_decrypt;
use super::KmsClient;
use crate::error::{Error, Result, SkipReason};
use crate::keyring::{ensure_no_data_key, Attempts, Keyring};
use crate::materials::{DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};

/// Limits discovery to keys of one partition and a set of accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryFilter {
    partition: String,
    accounts: BTreeSet<String>,
}

impl DiscoveryFilter {
    /// A filter for `partition` (e.g. `aws`) and at least one account id.
    pub fn new(partition: &str, accounts: impl IntoIterator<Item = impl Into<String>>) -> Result<Self> {
        let accounts: BTreeSet<String> = accounts.into_iter().map(Into::into).collect();
        if partition.is_empty() || accounts.is_empty() || accounts.iter().any(String::is_empty) {
            return Err(Error::InvalidConfig(
                "a discovery filter needs a partition and at least one non-empty account id".into(),
            ));
        }
        Ok(Self { partition: partition.to_owned(), accounts })
    }

    /// Whether `arn`'s partition or account is outside this filter.
    fn rejects(&self, arn: &KmsArn) -> bool {
        arn.partition() != self.partition || !self.accounts.contains(arn.account())
    }
}

impl fmt::Display for DiscoveryFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "partition {}, accounts [{}]",
            self.partition,
            self.accounts.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    }
}

/// Shared implementation: `region` is set for the MRK-aware form.
struct Discovery {
    client: Arc<dyn KmsClient>,
    filter: Option<DiscoveryFilter>,
    grant_tokens: Vec<String>,
    region: Option<String>,
}

impl Discovery {
    fn describe(&self) -> String {
        let filter = self.filter.as_ref().map_or("no discovery filter".to_owned(), |f| f.to_string());
        match &self.region {
            Some(r) => format!("KMS MRK-aware discovery in {r} ({filter})"),
            None => format!("KMS discovery ({filter})"),
        }
    }

    async fn on_decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        ensure_no_data_key(&materials)?;
        let attempts = Attempts::new(self.describe(), edks);
        let select = |arn: KmsArn| {
            if let Some(filter) = self.filter.as_ref().filter(|f| f.rejects(&arn)) {
                return Err(SkipReason::DiscoveryFilter { key_arn: arn.to_string(), filter: filter.to_string() });
            }
            match &self.region {
                Some(region) if arn.is_mrk() => Ok(arn.with_region(region).to_string()),
                Some(region) if arn.region() != region => {
                    Err(SkipReason::OtherRegion { key_arn: arn.to_string(), region: region.clone() })
                }
                _ => Ok(arn.to_string()),
            }
        };
        let (i, key) =
            filter_then_decrypt(&*self.client, edks, &materials, &self.grant_tokens, attempts, select).await?;
        materials.set_data_key_from_edk(key, i)?;
        Ok(materials)
    }
}

fn cannot_encrypt(what: &str) -> Error {
    Error::Keyring {
        action: "wrap the data key",
        reason: format!("a {what} has no key to encrypt with; use a strict KMS keyring"),
        retryable: false,
    }
}

/// Discovery keyring: decrypts any `aws-kms` EDK its filter allows, calling KMS with the EDK's
/// own key ARN. Cannot encrypt.
pub struct KmsDiscoveryKeyring(Discovery);

impl KmsDiscoveryKeyring {
    /// A discovery keyring. Without a filter it will ask KMS about any key ARN it finds: prefer
    /// [`Self::with_filter`].
    pub fn new(client: Arc<dyn KmsClient>) -> Self {
        Self(Discovery { client, filter: None, grant_tokens: Vec::new(), region: None })
    }

    /// A discovery keyring limited to `filter`.
    pub fn with_filter(client: Arc<dyn KmsClient>, filter: DiscoveryFilter) -> Self {
        Self(Discovery { client, filter: Some(filter), grant_tokens: Vec::new(), region: None })
    }

    /// Grant tokens passed with every KMS call.
    pub fn with_grant_tokens(mut self, grant_tokens: Vec<String>) -> Self {
        self.0.grant_tokens = grant_tokens;
        self
    }
}

/// MRK-aware discovery keyring bound to one Region: an MRK EDK from any Region is decrypted by
/// the replica in this Region (its ARN rewritten to this Region); single-Region keys from other
/// Regions are skipped. Cannot encrypt.
pub struct KmsMrkDiscoveryKeyring(Discovery);

impl KmsMrkDiscoveryKeyring {
    /// A keyring for `region`, whose client must talk to that Region.
    pub fn new(client: Arc<dyn KmsClient>, region: &str, filter: Option<DiscoveryFilter>) -> Result<Self> {
        if region.is_empty() {
            return Err(Error::InvalidConfig("an MRK-aware discovery keyring needs a Region".into()));
        }
        if let Some(client_region) = client.region() {
            if client_region != region {
                return Err(Error::InvalidConfig(format!(
                    "the KMS client talks to {client_region}, but the keyring is for {region}"
                )));
            }
        }
        Ok(Self(Discovery { client, filter, grant_tokens: Vec::new(), region: Some(region.to_owned()) }))
    }

    /// Grant tokens passed with every KMS call.
    pub fn with_grant_tokens(mut self, grant_tokens: Vec<String>) -> Self {
        self.0.grant_tokens = grant_tokens;
        self
    }
}

macro_rules! discovery_keyring {
    ($name:ident, $what:literal) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("region", &self.0.region)
                    .field("filter", &self.0.filter)
                    .field("client", &self.0.client)
                    .finish()
            }
        }

        #[async_trait]
        impl Keyring for $name {
            async fn on_encrypt(&self, _materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
                Err(cannot_encrypt($what))
            }
            async fn on_decrypt(
                &self,
                materials: DecryptionMaterials,
                edks: &[EncryptedDataKey],
            ) -> Result<DecryptionMaterials> {
                self.0.on_decrypt(materials, edks).await
            }
        }
    };
}

discovery_keyring!(KmsDiscoveryKeyring, "KMS discovery keyring");
discovery_keyring!(KmsMrkDiscoveryKeyring, "KMS MRK-aware discovery keyring");
