//! The branch key store (spec `framework/branch-key-store.md`, the MPL's `KeyStore`): branch
//! keys and beacon keys kept in a DynamoDB table, each wrapped by a KMS key under an encryption
//! context that binds every attribute of its item (feature `hierarchy`).
//!
//! The table and item layout are the MPL's, so a store created by the official libraries is
//! read here and the reverse. Reads go through DynamoDB `GetItem` and KMS `Decrypt` (with the
//! configured key, or the one the item names in the discovery configurations); creating and
//! versioning keys use `GenerateDataKeyWithoutPlaintext` and `ReEncrypt`, so no plaintext
//! branch key ever exists outside KMS while it is created.

mod record;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, ScalarAttributeType,
    TransactWriteItem,
};

use crate::error::{Error, KeyStoreCause, KeyStoreError, KmsError, Result};
use crate::keyring::kms::client::on_tokio;
use crate::keyring::kms::{mrk_match, AwsSdkKmsClient, KeyIdentifier, KmsArn, KmsClient};
use crate::materials::DataKey;
use crate::EncryptionContext;

use record::Item;

/// Length of branch keys and beacon keys (`NumberOfBytes` of their creation).
const KEY_LEN: usize = 32;
use record::MAX_CIPHERTEXT_LEN;

/// How long `CreateKeyStore` waits for a new table to become ACTIVE.
const TABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Which KMS key(s) wrap the store's keys (spec "AWS KMS Configuration").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KmsConfiguration {
    /// One key ARN: items must name exactly this key.
    KeyArn(String),
    /// One key ARN, multi-Region aware: items may name any replica of it, and are unwrapped by
    /// this one.
    MrkKeyArn(String),
    /// Any key the items name (read only: keys cannot be created or versioned).
    Discovery,
    /// Any key the items name, multi-Region keys called in this Region (read only).
    MrDiscovery {
        /// The Region multi-Region key ARNs are moved to.
        region: String,
    },
}

impl KmsConfiguration {
    /// The configured key ARN, if there is one.
    pub fn key_arn(&self) -> Option<&str> {
        match self {
            Self::KeyArn(a) | Self::MrkKeyArn(a) => Some(a),
            Self::Discovery | Self::MrDiscovery { .. } => None,
        }
    }

    /// The Region its clients are made for by default, if it names one.
    fn region(&self) -> Option<String> {
        match self {
            Self::KeyArn(a) | Self::MrkKeyArn(a) => KmsArn::parse(a).ok().map(|a| a.region().to_owned()),
            Self::MrDiscovery { region } => Some(region.clone()),
            Self::Discovery => None,
        }
    }
}

impl fmt::Display for KmsConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyArn(a) => write!(f, "key {a}"),
            Self::MrkKeyArn(a) => write!(f, "multi-Region key {a}"),
            Self::Discovery => f.write_str("discovery"),
            Self::MrDiscovery { region } => write!(f, "multi-Region discovery in {region}"),
        }
    }
}

/// A branch key version, unwrapped (spec `framework/structures.md`, "Branch Key Materials").
/// The key is wiped on drop and never shown by `Debug`.
pub struct BranchKeyMaterials {
    branch_key_id: String,
    version: String,
    key: DataKey,
    encryption_context: EncryptionContext,
}

impl BranchKeyMaterials {
    pub(crate) fn new(branch_key_id: &str, version: &str, key: DataKey, encryption_context: EncryptionContext) -> Self {
        Self { branch_key_id: branch_key_id.to_owned(), version: version.to_owned(), key, encryption_context }
    }

    /// The branch key id.
    pub fn branch_key_id(&self) -> &str {
        &self.branch_key_id
    }
    /// The version (a UUID string).
    pub fn version(&self) -> &str {
        &self.version
    }
    /// The custom encryption context the key was created with.
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.encryption_context
    }
    /// The 32-byte branch key.
    pub fn expose_secret(&self) -> &[u8] {
        self.key.expose_secret()
    }
}

impl fmt::Debug for BranchKeyMaterials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BranchKeyMaterials")
            .field("branch_key_id", &self.branch_key_id)
            .field("version", &self.version)
            .field("encryption_context", &self.encryption_context)
            .finish_non_exhaustive()
    }
}

/// A beacon key, unwrapped (spec `framework/structures.md`, "Beacon Key Materials"), for
/// searchable encryption. Wiped on drop, never shown by `Debug`.
pub struct BeaconKeyMaterials {
    beacon_key_id: String,
    key: DataKey,
    encryption_context: EncryptionContext,
}

impl BeaconKeyMaterials {
    /// The branch key id the beacon key belongs to.
    pub fn beacon_key_id(&self) -> &str {
        &self.beacon_key_id
    }
    /// The custom encryption context.
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.encryption_context
    }
    /// The 32-byte beacon key.
    pub fn expose_secret(&self) -> &[u8] {
        self.key.expose_secret()
    }
}

impl fmt::Debug for BeaconKeyMaterials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BeaconKeyMaterials")
            .field("beacon_key_id", &self.beacon_key_id)
            .field("encryption_context", &self.encryption_context)
            .finish_non_exhaustive()
    }
}

/// What [`KeyStore::info`] returns (spec "GetKeyStoreInfo"). `Debug` shows how many grant
/// tokens there are, not the tokens.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStoreInfo {
    /// This store client's id.
    pub id: String,
    /// The DynamoDB table.
    pub table: String,
    /// The logical store name bound to every key.
    pub logical_name: String,
    /// The KMS configuration.
    pub kms: KmsConfiguration,
    /// Grant tokens passed to KMS.
    pub grant_tokens: Vec<String>,
}

impl fmt::Debug for KeyStoreInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStoreInfo")
            .field("id", &self.id)
            .field("table", &self.table)
            .field("logical_name", &self.logical_name)
            .field("kms", &self.kms)
            .field("grant_tokens", &self.grant_tokens.len())
            .finish()
    }
}

/// DynamoDB calls a [`KeyStore`] made (attempted calls, failed ones included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DynamoDbCallCounts {
    /// `GetItem` calls.
    pub get_item: u64,
    /// `TransactWriteItems` calls.
    pub transact_write_items: u64,
}

/// A client of one branch key store table.
pub struct KeyStore {
    info: KeyStoreInfo,
    kms: Arc<dyn KmsClient>,
    ddb: aws_sdk_dynamodb::Client,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore").field("info", &self.info).field("kms", &self.kms).finish_non_exhaustive()
    }
}

/// Operation names, as the spec and the errors give them.
const GET_ACTIVE: &str = "GetActiveBranchKey";
const GET_VERSION: &str = "GetBranchKeyVersion";
const GET_BEACON: &str = "GetBeaconKey";
const CREATE_KEY: &str = "CreateKey";
const VERSION_KEY: &str = "VersionKey";
const CREATE_STORE: &str = "CreateKeyStore";

impl KeyStore {
    /// A store on `table` with the logical name `logical_name` (bound to every key: the same
    /// for every client of one table, and never reused for another table), calling KMS and
    /// DynamoDB through the given clients.
    pub fn new(
        table: &str,
        logical_name: &str,
        kms_configuration: KmsConfiguration,
        kms: Arc<dyn KmsClient>,
        ddb: aws_sdk_dynamodb::Client,
    ) -> Result<Self> {
        if table.is_empty() || logical_name.is_empty() {
            return Err(Error::InvalidConfig("the key store needs a table name and a logical name".into()));
        }
        if let Some(arn) = kms_configuration.key_arn() {
            let parsed = KeyIdentifier::parse(arn)?;
            if parsed.key_arn().is_none() {
                return Err(Error::InvalidConfig(format!(
                    "the key store's KMS key must be a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), not {arn}"
                )));
            }
        }
        if let KmsConfiguration::MrDiscovery { region } = &kms_configuration {
            if region.is_empty() {
                return Err(Error::InvalidConfig("multi-Region discovery needs a Region".into()));
            }
        }
        Ok(Self {
            info: KeyStoreInfo {
                id: new_uuid()?,
                table: table.to_owned(),
                logical_name: logical_name.to_owned(),
                kms: kms_configuration,
                grant_tokens: Vec::new(),
            },
            kms,
            ddb,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }

    /// As [`Self::new`], with KMS and DynamoDB clients from the standard AWS environment, in the
    /// Region of the configured key (or of multi-Region discovery; the environment's for
    /// discovery), as the spec has it.
    pub async fn from_env(table: &str, logical_name: &str, kms_configuration: KmsConfiguration) -> Result<Self> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = kms_configuration.region() {
            loader = loader.region(aws_config::Region::new(region));
        }
        let config = on_tokio(loader.load()).await;
        Self::from_sdk_config(table, logical_name, kms_configuration, &config)
    }

    /// As [`Self::new`], with KMS and DynamoDB clients of `config` (its Region and
    /// credentials, for both), e.g. for a chosen profile.
    pub fn from_sdk_config(
        table: &str,
        logical_name: &str,
        kms_configuration: KmsConfiguration,
        config: &aws_config::SdkConfig,
    ) -> Result<Self> {
        let kms = AwsSdkKmsClient::new(aws_sdk_kms::Client::new(config));
        Self::new(table, logical_name, kms_configuration, Arc::new(kms), aws_sdk_dynamodb::Client::new(config))
    }

    /// Grant tokens passed with every KMS call.
    pub fn with_grant_tokens(mut self, grant_tokens: Vec<String>) -> Self {
        self.info.grant_tokens = grant_tokens;
        self
    }

    /// Sets this client's id (a new v4 UUID by default).
    pub fn with_id(mut self, id: &str) -> Self {
        self.info.id = id.to_owned();
        self
    }

    /// Spec "GetKeyStoreInfo".
    pub fn info(&self) -> &KeyStoreInfo {
        &self.info
    }

    /// The logical store name.
    pub fn logical_name(&self) -> &str {
        &self.info.logical_name
    }

    /// DynamoDB calls made so far.
    pub fn dynamodb_calls(&self) -> DynamoDbCallCounts {
        DynamoDbCallCounts {
            get_item: self.reads.load(Ordering::Relaxed),
            transact_write_items: self.writes.load(Ordering::Relaxed),
        }
    }

    fn error(&self, operation: &'static str, id: &str, version: Option<&str>, cause: KeyStoreCause) -> Error {
        Error::KeyStore(Box::new(KeyStoreError {
            operation,
            table: self.info.table.clone(),
            branch_key_id: id.to_owned(),
            version: version.map(str::to_owned),
            cause,
        }))
    }

    /// Spec "CreateKeyStore": creates the table (partition key `branch-key-id`, sort key
    /// `type`, on-demand capacity) unless it exists; an existing table must have that key
    /// schema. Returns the table ARN.
    pub async fn create_key_store(&self) -> Result<String> {
        let fail = |cause| self.error(CREATE_STORE, "", None, cause);
        let table = self.info.table.clone();
        let described = on_tokio(self.ddb.describe_table().table_name(&table).send()).await;
        match described {
            Ok(out) => {
                let t = out.table().ok_or_else(|| fail(invalid_response("DescribeTable returned no table")))?;
                let schema: Vec<(&str, &KeyType)> =
                    t.key_schema().iter().map(|k| (k.attribute_name(), k.key_type())).collect();
                if schema.len() != 2
                    || !schema.contains(&(record::BRANCH_KEY_ID, &KeyType::Hash))
                    || !schema.contains(&(record::TYPE, &KeyType::Range))
                {
                    return Err(fail(KeyStoreCause::Unsupported(format!(
                        "table {table} exists with another key schema ({schema:?}); a key store needs partition \
                         key {:?} and sort key {:?}",
                        record::BRANCH_KEY_ID,
                        record::TYPE
                    ))));
                }
                Ok(t.table_arn().unwrap_or_default().to_owned())
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                let key = |name: &str, kind| {
                    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(build_error)
                };
                let attr = |name: &str| {
                    AttributeDefinition::builder()
                        .attribute_name(name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build_error)
                };
                let req = self
                    .ddb
                    .create_table()
                    .table_name(&table)
                    .key_schema(key(record::BRANCH_KEY_ID, KeyType::Hash)?)
                    .key_schema(key(record::TYPE, KeyType::Range)?)
                    .attribute_definitions(attr(record::BRANCH_KEY_ID)?)
                    .attribute_definitions(attr(record::TYPE)?)
                    .billing_mode(BillingMode::PayPerRequest);
                let out = on_tokio(req.send()).await.map_err(|e| fail(ddb_cause("CreateTable", &e)))?;
                let arn = out.table_description().and_then(|t| t.table_arn()).unwrap_or_default().to_owned();
                // A new table takes a moment to become ACTIVE; keys cannot be written before.
                let ddb = self.ddb.clone();
                let waited = on_tokio(async move {
                    ddb.wait_until_table_exists().table_name(table).wait(TABLE_WAIT).await.map(|_| ())
                })
                .await;
                waited.map_err(|e| {
                    fail(KeyStoreCause::DynamoDb {
                        call: "DescribeTable",
                        code: "TableNotActive".into(),
                        message: format!("the new table did not become ACTIVE within {TABLE_WAIT:?}: {e}"),
                        retryable: true,
                    })
                })?;
                Ok(arn)
            }
            Err(e) => Err(fail(ddb_cause("DescribeTable", &e))),
        }
    }

    /// Spec "GetActiveBranchKey": the active version of `branch_key_id`.
    pub async fn get_active_branch_key(&self, branch_key_id: &str) -> Result<BranchKeyMaterials> {
        let item = self.get_item(GET_ACTIVE, branch_key_id, None, record::ACTIVE).await?;
        self.unwrap_branch_key(GET_ACTIVE, branch_key_id, None, &item).await
    }

    /// Spec "GetBranchKeyVersion": one version of `branch_key_id`.
    pub async fn get_branch_key_version(&self, branch_key_id: &str, version: &str) -> Result<BranchKeyMaterials> {
        let sort = record::version_type(version);
        let item = self.get_item(GET_VERSION, branch_key_id, Some(version), &sort).await?;
        self.unwrap_branch_key(GET_VERSION, branch_key_id, Some(version), &item).await
    }

    /// Spec "GetBeaconKey": the beacon key of `branch_key_id`.
    pub async fn get_beacon_key(&self, branch_key_id: &str) -> Result<BeaconKeyMaterials> {
        let item = self.get_item(GET_BEACON, branch_key_id, None, record::BEACON).await?;
        let (context, key) = self.unwrap_item(GET_BEACON, branch_key_id, None, &item, record::BEACON).await?;
        Ok(BeaconKeyMaterials {
            beacon_key_id: branch_key_id.to_owned(),
            key,
            encryption_context: record::custom_context(&context),
        })
    }

    /// Spec "CreateKey": a new branch key (its first version, the ACTIVE copy and the beacon
    /// key) under the configured KMS key, with the custom `encryption_context` bound to it.
    /// Without `branch_key_id` a v4 UUID is used; a chosen id needs a non-empty context (the
    /// spec's rule, so that chosen ids carry their tenant binding). Returns the branch key id.
    pub async fn create_key(
        &self,
        branch_key_id: Option<&str>,
        encryption_context: &EncryptionContext,
    ) -> Result<String> {
        let shown = branch_key_id.unwrap_or("");
        let kms_arn = self.writable_key(CREATE_KEY, shown)?;
        let id = match branch_key_id {
            Some("") => {
                return Err(self.error(CREATE_KEY, "", None, unsupported("the branch key id must not be empty")))
            }
            Some(_) if encryption_context.is_empty() => {
                return Err(self.error(
                    CREATE_KEY,
                    shown,
                    None,
                    unsupported("a chosen branch key id needs an encryption context (omit the id for a new UUID)"),
                ))
            }
            Some(id) => id.to_owned(),
            None => new_uuid()?,
        };
        for (k, v) in encryption_context {
            if k.is_empty() || v.is_empty() {
                return Err(self.error(
                    CREATE_KEY,
                    &id,
                    None,
                    unsupported("custom context keys and values must not be empty"),
                ));
            }
        }
        let version = new_uuid()?;
        let decrypt_only = record::decrypt_only_context(
            &id,
            &version,
            &create_time(),
            &self.info.logical_name,
            &kms_arn,
            encryption_context,
        );
        let beacon = record::beacon_context(&decrypt_only);
        let (decrypt_only_enc, active, active_enc) =
            self.wrap_version(CREATE_KEY, &id, &version, &kms_arn, decrypt_only.clone()).await?;
        let beacon_enc = self
            .kms
            .generate_data_key_without_plaintext(&kms_arn, KEY_LEN, &beacon, &self.info.grant_tokens)
            .await
            .map_err(|e| self.error(CREATE_KEY, &id, Some(&version), KeyStoreCause::Kms(e)))?;
        self.check_wrapped(CREATE_KEY, &id, Some(&version), &kms_arn, &beacon_enc)?;
        let items = [
            self.put(record::to_item(&decrypt_only, decrypt_only_enc), None)?,
            self.put(record::to_item(&active, active_enc), None)?,
            self.put(record::to_item(&beacon, beacon_enc.ciphertext_blob), None)?,
        ];
        self.transact_write(CREATE_KEY, &id, Some(&version), items).await?;
        tracing::info!(table = %self.info.table, branch_key_id = %id, %version, "created branch key");
        Ok(id)
    }

    /// Spec "VersionKey": a new active version of `branch_key_id`. The current ACTIVE item is
    /// checked with KMS `ReEncrypt` first, and replaced only if it is still the one read (a
    /// concurrent rotation makes this fail with [`KeyStoreCause::Conflict`]: run it again).
    /// Returns the new version.
    pub async fn version_key(&self, branch_key_id: &str) -> Result<String> {
        let kms_arn = self.writable_key(VERSION_KEY, branch_key_id)?;
        let item = self.get_item(VERSION_KEY, branch_key_id, None, record::ACTIVE).await?;
        let (active, old_enc) = self.checked_context(VERSION_KEY, branch_key_id, None, &item, record::ACTIVE)?;
        // The item's kms-arn must be the configured key (or, MRK-aware, a replica of it); it is
        // kept unchanged in the new version.
        self.decrypt_key_id(active.get(record::KMS_ARN).unwrap_or_default())
            .map_err(|why| self.error(VERSION_KEY, branch_key_id, None, KeyStoreCause::InvalidItem(why)))?;
        // "Authenticating a keystore item": KMS re-encrypts only if the item is intact.
        let checked = self
            .kms
            .re_encrypt(&kms_arn, &old_enc, &active, &kms_arn, &active, &self.info.grant_tokens)
            .await
            .map_err(|e| self.error(VERSION_KEY, branch_key_id, None, KeyStoreCause::Kms(e)))?;
        self.check_wrapped(VERSION_KEY, branch_key_id, None, &kms_arn, &checked)?;
        let version = new_uuid()?;
        let decrypt_only = record::new_version_context(&active, &version, &create_time());
        let (decrypt_only_enc, new_active, active_enc) =
            self.wrap_version(VERSION_KEY, branch_key_id, &version, &kms_arn, decrypt_only.clone()).await?;
        let items = [
            self.put(record::to_item(&decrypt_only, decrypt_only_enc), None)?,
            self.put(record::to_item(&new_active, active_enc), Some(old_enc))?,
        ];
        self.transact_write(VERSION_KEY, branch_key_id, Some(&version), items).await?;
        tracing::info!(table = %self.info.table, %branch_key_id, %version, "versioned branch key");
        Ok(version)
    }

    /// The configured key ARN, for the operations that write (not in discovery).
    fn writable_key(&self, operation: &'static str, id: &str) -> Result<String> {
        self.info.kms.key_arn().map(str::to_owned).ok_or_else(|| {
            self.error(
                operation,
                id,
                None,
                unsupported(&format!(
                    "a key store in {} cannot create or version keys; configure it with a KMS key ARN",
                    self.info.kms
                )),
            )
        })
    }

    /// "Wrapped Branch Key Creation": the DECRYPT_ONLY key from
    /// `GenerateDataKeyWithoutPlaintext`, its ACTIVE copy from `ReEncrypt`.
    async fn wrap_version(
        &self,
        operation: &'static str,
        id: &str,
        version: &str,
        kms_arn: &str,
        decrypt_only: EncryptionContext,
    ) -> Result<(Vec<u8>, EncryptionContext, Vec<u8>)> {
        let kms_failed = |e: KmsError| self.error(operation, id, Some(version), KeyStoreCause::Kms(e));
        let tokens = &self.info.grant_tokens;
        let generated = self
            .kms
            .generate_data_key_without_plaintext(kms_arn, KEY_LEN, &decrypt_only, tokens)
            .await
            .map_err(kms_failed)?;
        self.check_wrapped(operation, id, Some(version), kms_arn, &generated)?;
        let active = record::active_context(&decrypt_only);
        let copied = self
            .kms
            .re_encrypt(kms_arn, &generated.ciphertext_blob, &decrypt_only, kms_arn, &active, tokens)
            .await
            .map_err(kms_failed)?;
        self.check_wrapped(operation, id, Some(version), kms_arn, &copied)?;
        Ok((generated.ciphertext_blob, active, copied.ciphertext_blob))
    }

    /// The MPL's checks of a `GenerateDataKeyWithoutPlaintext` or `ReEncrypt` answer: made by
    /// the configured key (for `ReEncrypt`, from it too), and a ciphertext of KMS' lengths.
    fn check_wrapped(
        &self,
        operation: &'static str,
        id: &str,
        version: Option<&str>,
        kms_arn: &str,
        out: &crate::keyring::kms::EncryptOutput,
    ) -> Result<()> {
        let refuse = |why: String| self.error(operation, id, version, KeyStoreCause::InvalidResponse(why));
        if out.key_id != kms_arn || out.source_key_id.as_deref().is_some_and(|s| s != kms_arn) {
            return Err(refuse(format!(
                "KMS answered for {} (source {}) instead of {kms_arn}",
                out.key_id,
                out.source_key_id.as_deref().unwrap_or("-")
            )));
        }
        if !(1..=MAX_CIPHERTEXT_LEN).contains(&out.ciphertext_blob.len()) {
            return Err(refuse(format!("KMS returned a {}-byte ciphertext", out.ciphertext_blob.len())));
        }
        Ok(())
    }

    fn put(&self, item: Item, replacing: Option<Vec<u8>>) -> Result<TransactWriteItem> {
        let mut put = Put::builder()
            .table_name(&self.info.table)
            .set_item(Some(item))
            .expression_attribute_names("#BranchKeyIdentifierField", record::BRANCH_KEY_ID);
        put = match replacing {
            None => put.condition_expression("attribute_not_exists(#BranchKeyIdentifierField)"),
            Some(old) => put
                .condition_expression("attribute_exists(#BranchKeyIdentifierField) AND #Enc = :encOld")
                .expression_attribute_names("#Enc", record::ENC)
                .expression_attribute_values(
                    ":encOld",
                    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(old)),
                ),
        };
        Ok(TransactWriteItem::builder().put(put.build().map_err(build_error)?).build())
    }

    async fn transact_write(
        &self,
        operation: &'static str,
        id: &str,
        version: Option<&str>,
        items: impl IntoIterator<Item = TransactWriteItem>,
    ) -> Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let req = self.ddb.transact_write_items().set_transact_items(Some(items.into_iter().collect()));
        match on_tokio(req.send()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let reasons: Vec<&str> = match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                        c.cancellation_reasons().iter().filter_map(|r| r.code()).collect()
                    }
                    _ => Vec::new(),
                };
                let cause = if reasons.contains(&"ConditionalCheckFailed") {
                    KeyStoreCause::Conflict
                } else {
                    let mut cause = ddb_cause("TransactWriteItems", &e);
                    if let KeyStoreCause::DynamoDb { retryable, .. } = &mut cause {
                        *retryable |=
                            reasons.iter().any(|r| crate::aws_error::TRANSIENT_CANCELLATION_REASONS.contains(r));
                    }
                    cause
                };
                Err(self.error(operation, id, version, cause))
            }
        }
    }

    async fn get_item(&self, operation: &'static str, id: &str, version: Option<&str>, sort: &str) -> Result<Item> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let req = self
            .ddb
            .get_item()
            .table_name(&self.info.table)
            .key(record::BRANCH_KEY_ID, AttributeValue::S(id.to_owned()))
            .key(record::TYPE, AttributeValue::S(sort.to_owned()));
        let out =
            on_tokio(req.send()).await.map_err(|e| self.error(operation, id, version, ddb_cause("GetItem", &e)))?;
        out.item.ok_or_else(|| self.error(operation, id, version, KeyStoreCause::NotFound))
    }

    /// The item's authenticated context, after checking it is the record asked for and that
    /// its `kms-arn` is allowed by the configuration ("AWS KMS Branch Key Decryption").
    fn checked_context(
        &self,
        operation: &'static str,
        id: &str,
        version: Option<&str>,
        item: &Item,
        expected_type: &str,
    ) -> Result<(EncryptionContext, Vec<u8>)> {
        let refuse = |why: String| self.error(operation, id, version, KeyStoreCause::InvalidItem(why));
        let (context, enc) = record::item_context(item, &self.info.logical_name).map_err(refuse)?;
        if context.get(record::BRANCH_KEY_ID) != Some(id) || context.get(record::TYPE) != Some(expected_type) {
            return Err(refuse(format!("the item is not the {expected_type:?} record of branch key {id:?}")));
        }
        Ok((context, enc))
    }

    /// The `KeyId` to unwrap an item with: the configured key (whose ARN the item's must match,
    /// exactly or as a replica), or in discovery the item's own key ARN.
    fn decrypt_key_id(&self, item_arn: &str) -> std::result::Result<String, String> {
        let parsed = KeyIdentifier::parse(item_arn).ok();
        let Some(arn) = parsed.as_ref().and_then(KeyIdentifier::key_arn) else {
            return Err(format!("its kms-arn {item_arn:?} is not a KMS key ARN"));
        };
        match &self.info.kms {
            KmsConfiguration::KeyArn(configured) if configured == item_arn => Ok(configured.clone()),
            KmsConfiguration::MrkKeyArn(configured)
                if KeyIdentifier::parse(configured).is_ok_and(|c| mrk_match(&c, &KeyIdentifier::Arn(arn.clone()))) =>
            {
                Ok(configured.clone())
            }
            KmsConfiguration::KeyArn(configured) | KmsConfiguration::MrkKeyArn(configured) => {
                Err(format!("it is wrapped by {item_arn}, and this store only uses {configured} ({})", self.info.kms))
            }
            KmsConfiguration::Discovery => Ok(item_arn.to_owned()),
            KmsConfiguration::MrDiscovery { region } if arn.is_mrk() => Ok(arn.with_region(region).to_string()),
            KmsConfiguration::MrDiscovery { .. } => Ok(item_arn.to_owned()),
        }
    }

    async fn unwrap_item(
        &self,
        operation: &'static str,
        id: &str,
        version: Option<&str>,
        item: &Item,
        expected_type: &str,
    ) -> Result<(EncryptionContext, DataKey)> {
        let (context, enc) = self.checked_context(operation, id, version, item, expected_type)?;
        let refuse = |why: String| self.error(operation, id, version, KeyStoreCause::InvalidItem(why));
        let key_id = self.decrypt_key_id(context.get(record::KMS_ARN).unwrap_or_default()).map_err(refuse)?;
        let out = self
            .kms
            .decrypt(&key_id, &enc, &context, &self.info.grant_tokens)
            .await
            .map_err(|e| self.error(operation, id, version, KeyStoreCause::Kms(e)))?;
        let bad_answer = |why: String| self.error(operation, id, version, KeyStoreCause::InvalidResponse(why));
        if out.key_id != key_id {
            return Err(bad_answer(format!("KMS Decrypt answered for {} instead of {key_id}", out.key_id)));
        }
        if out.plaintext.len() != KEY_LEN {
            return Err(bad_answer(format!(
                "KMS Decrypt returned {} bytes, not a {KEY_LEN}-byte key",
                out.plaintext.len()
            )));
        }
        Ok((context, out.plaintext))
    }

    async fn unwrap_branch_key(
        &self,
        operation: &'static str,
        id: &str,
        version: Option<&str>,
        item: &Item,
    ) -> Result<BranchKeyMaterials> {
        let expected_type = match version {
            Some(v) => record::version_type(v),
            None => record::ACTIVE.to_owned(),
        };
        let (context, key) = self.unwrap_item(operation, id, version, item, &expected_type).await?;
        let found = record::version_of(&context).ok_or_else(|| {
            self.error(operation, id, version, KeyStoreCause::InvalidItem("it names no version".into()))
        })?;
        Ok(BranchKeyMaterials::new(id, found, key, record::custom_context(&context)))
    }
}

/// The 16 bytes of a new version 4 UUID, from the operating system's random generator.
pub(crate) fn new_uuid_bytes() -> Result<[u8; 16]> {
    let mut bytes = [0u8; 16];
    crate::crypto::fill_random(&mut bytes)?;
    Ok(*uuid::Builder::from_random_bytes(bytes).into_uuid().as_bytes())
}

/// A new version 4 UUID, hyphenated.
pub(crate) fn new_uuid() -> Result<String> {
    Ok(uuid::Uuid::from_bytes(new_uuid_bytes()?).hyphenated().to_string())
}

/// Now, in ISO 8601 UTC with microseconds (spec: "to microsecond precision").
fn create_time() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

fn ddb_cause<E>(
    call: &'static str,
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> KeyStoreCause
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = crate::aws_error::classify(e);
    KeyStoreCause::DynamoDb { call, code: f.code, message: f.message, retryable: f.retryable }
}

fn invalid_response(why: &str) -> KeyStoreCause {
    KeyStoreCause::InvalidResponse(why.to_owned())
}

fn unsupported(why: &str) -> KeyStoreCause {
    KeyStoreCause::Unsupported(why.to_owned())
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::InvalidConfig(format!("cannot build a DynamoDB request: {e}"))
}
