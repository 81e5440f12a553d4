//! The seam between the KMS keyrings and AWS KMS: a small trait, its `aws-sdk-kms`
//! implementation, and a per-Region client supplier.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;

use crate::context::EncryptionContext;
pub use crate::error::KmsError;
use crate::error::{Error, Result};
use crate::materials::DataKey;

use super::KmsRsaAlgorithm;

/// Response of `GenerateDataKey`.
#[derive(Debug)]
pub struct GenerateDataKeyOutput {
    /// The key ARN KMS used.
    pub key_id: String,
    /// The plaintext data key.
    pub plaintext: DataKey,
    /// The encrypted data key.
    pub ciphertext_blob: Vec<u8>,
}

/// Response of `Encrypt`, `GenerateDataKeyWithoutPlaintext` and `ReEncrypt`.
#[derive(Debug)]
pub struct EncryptOutput {
    /// The key ARN KMS used (for `ReEncrypt`, the destination key).
    pub key_id: String,
    /// `ReEncrypt` only: the key ARN the ciphertext was decrypted with.
    pub source_key_id: Option<String>,
    /// The encrypted data key.
    pub ciphertext_blob: Vec<u8>,
}

/// Response of `Decrypt`.
#[derive(Debug)]
pub struct DecryptOutput {
    /// The key ARN KMS used.
    pub key_id: String,
    /// The plaintext data key.
    pub plaintext: DataKey,
}

/// The KMS operations the keyrings and the branch key store use. `key_id` is always passed
/// explicitly.
#[async_trait]
pub trait KmsClient: Send + Sync + fmt::Debug {
    /// The Region this client talks to, if known.
    fn region(&self) -> Option<&str>;

    /// `GenerateDataKey` with `NumberOfBytes`.
    async fn generate_data_key(
        &self,
        key_id: &str,
        number_of_bytes: usize,
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<GenerateDataKeyOutput, KmsError>;

    /// `Encrypt` of an existing data key.
    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<EncryptOutput, KmsError>;

    /// `Decrypt` with an explicit `KeyId`.
    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext_blob: &[u8],
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<DecryptOutput, KmsError>;

    /// `Decrypt` of an RSA ciphertext (`EncryptionAlgorithm` named, no encryption context: KMS
    /// takes none with asymmetric keys), for the AWS KMS RSA keyring.
    async fn decrypt_rsa(
        &self,
        key_id: &str,
        ciphertext_blob: &[u8],
        algorithm: KmsRsaAlgorithm,
        grant_tokens: &[String],
    ) -> Result<DecryptOutput, KmsError>;

    /// `GenerateDataKeyWithoutPlaintext` with `NumberOfBytes`: a new key, encrypted only (the
    /// branch key store's key creation).
    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        number_of_bytes: usize,
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<EncryptOutput, KmsError>;

    /// `ReEncrypt` of `ciphertext_blob` from `source_key_id` under `source_context` to
    /// `destination_key_id` under `destination_context` (the branch key store's ACTIVE copy, and
    /// its check of a stored item). The answer's `key_id` is the destination key.
    async fn re_encrypt(
        &self,
        source_key_id: &str,
        ciphertext_blob: &[u8],
        source_context: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<EncryptOutput, KmsError>;
}

/// [`KmsClient`] on `aws-sdk-kms`.
///
/// Works inside a Tokio runtime and outside one: called from a thread without a runtime (for
/// example through `Client::decrypt_blocking`), the SDK call runs on a small shared background
/// runtime owned by this crate.
#[derive(Clone)]
pub struct AwsSdkKmsClient {
    inner: aws_sdk_kms::Client,
    region: Option<String>,
}

impl fmt::Debug for AwsSdkKmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSdkKmsClient").field("region", &self.region).finish()
    }
}

impl AwsSdkKmsClient {
    /// Wraps an SDK client.
    pub fn new(inner: aws_sdk_kms::Client) -> Self {
        let region = inner.config().region().map(|r| r.to_string());
        Self { inner, region }
    }

    /// A client from the standard AWS environment (`AWS_REGION`, credential chain,
    /// `AWS_ENDPOINT_URL[_KMS]`, retry and timeout settings).
    pub async fn from_env() -> Self {
        let config = load_sdk_config().await;
        Self::new(aws_sdk_kms::Client::new(&config))
    }
}

/// Loads the shared SDK configuration from the environment (on the background runtime when
/// called outside Tokio).
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    on_tokio(async { aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await }).await
}

fn background_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("esdk-kms")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the background Tokio runtime for KMS calls: {e}"))
    })
}

/// Runs `fut` on the current Tokio runtime, or on the background one when there is none.
pub(crate) async fn on_tokio<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        fut.await
    } else {
        match background_runtime().spawn(fut).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

fn classify<E>(operation: &'static str, key_id: &str, err: SdkError<E, HttpResponse>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = crate::aws_error::classify(&err);
    KmsError::new(operation, key_id, &f.code, &f.message, f.retryable)
}

fn context_map(ec: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!ec.is_empty()).then(|| ec.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

fn tokens(grant_tokens: &[String]) -> Option<Vec<String>> {
    (!grant_tokens.is_empty()).then(|| grant_tokens.to_vec())
}

/// The fields of a `Decrypt` answer the keyrings use.
fn decrypt_output(
    key_id: &str,
    out: &aws_sdk_kms::operation::decrypt::DecryptOutput,
) -> Result<DecryptOutput, KmsError> {
    const OP: &str = "Decrypt";
    Ok(DecryptOutput {
        key_id: out.key_id().ok_or_else(|| missing(OP, key_id, "KeyId"))?.to_owned(),
        plaintext: DataKey::from_bytes(out.plaintext().ok_or_else(|| missing(OP, key_id, "Plaintext"))?.as_ref()),
    })
}

/// The fields of an answer that carries an encrypted key (`Encrypt`, `ReEncrypt`,
/// `GenerateDataKeyWithoutPlaintext`).
fn encrypt_output(
    operation: &'static str,
    key_id: &str,
    returned_key_id: Option<&str>,
    ciphertext_blob: Option<&Blob>,
) -> Result<EncryptOutput, KmsError> {
    Ok(EncryptOutput {
        key_id: returned_key_id.ok_or_else(|| missing(operation, key_id, "KeyId"))?.to_owned(),
        source_key_id: None,
        ciphertext_blob: ciphertext_blob.ok_or_else(|| missing(operation, key_id, "CiphertextBlob"))?.as_ref().to_vec(),
    })
}

fn missing(operation: &'static str, key_id: &str, what: &str) -> KmsError {
    KmsError::new(operation, key_id, "InvalidResponse", &format!("the response has no {what}"), false)
}

#[async_trait]
impl KmsClient for AwsSdkKmsClient {
    fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        number_of_bytes: usize,
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<GenerateDataKeyOutput, KmsError> {
        const OP: &str = "GenerateDataKey";
        let req = self
            .inner
            .generate_data_key()
            .key_id(key_id)
            .number_of_bytes(i32::try_from(number_of_bytes).unwrap_or(i32::MAX))
            .set_encryption_context(context_map(encryption_context))
            .set_grant_tokens(tokens(grant_tokens));
        let out = on_tokio(req.send()).await.map_err(|e| classify(OP, key_id, e))?;
        Ok(GenerateDataKeyOutput {
            key_id: out.key_id().ok_or_else(|| missing(OP, key_id, "KeyId"))?.to_owned(),
            plaintext: DataKey::from_bytes(out.plaintext().ok_or_else(|| missing(OP, key_id, "Plaintext"))?.as_ref()),
            ciphertext_blob: out
                .ciphertext_blob()
                .ok_or_else(|| missing(OP, key_id, "CiphertextBlob"))?
                .as_ref()
                .to_vec(),
        })
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<EncryptOutput, KmsError> {
        const OP: &str = "Encrypt";
        let req = self
            .inner
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(context_map(encryption_context))
            .set_grant_tokens(tokens(grant_tokens));
        let out = on_tokio(req.send()).await.map_err(|e| classify(OP, key_id, e))?;
        encrypt_output(OP, key_id, out.key_id(), out.ciphertext_blob())
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext_blob: &[u8],
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<DecryptOutput, KmsError> {
        const OP: &str = "Decrypt";
        let req = self
            .inner
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext_blob))
            .set_encryption_context(context_map(encryption_context))
            .set_grant_tokens(tokens(grant_tokens));
        let out = on_tokio(req.send()).await.map_err(|e| classify(OP, key_id, e))?;
        decrypt_output(key_id, &out)
    }

    async fn decrypt_rsa(
        &self,
        key_id: &str,
        ciphertext_blob: &[u8],
        algorithm: KmsRsaAlgorithm,
        grant_tokens: &[String],
    ) -> Result<DecryptOutput, KmsError> {
        const OP: &str = "Decrypt";
        let req = self
            .inner
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext_blob))
            .encryption_algorithm(aws_sdk_kms::types::EncryptionAlgorithmSpec::from(algorithm.as_str()))
            .set_grant_tokens(tokens(grant_tokens));
        let out = on_tokio(req.send()).await.map_err(|e| classify(OP, key_id, e))?;
        decrypt_output(key_id, &out)
    }

    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        number_of_bytes: usize,
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<EncryptOutput, KmsError> {
        const OP: &str = "GenerateDataKeyWithoutPlaintext";
        let req = self
            .inner
            .generate_data_key_without_plaintext()
            .key_id(key_id)
            .number_of_bytes(i32::try_from(number_of_bytes).unwrap_or(i32::MAX))
            .set_encryption_context(context_map(encryption_context))
            .set_grant_tokens(tokens(grant_tokens));
        let out = on_tokio(req.send()).await.map_err(|e| classify(OP, key_id, e))?;
        encrypt_output(OP, key_id, out.key_id(), out.ciphertext_blob())
    }

    async fn re_encrypt(
        &self,
        source_key_id: &str,
        ciphertext_blob: &[u8],
        source_context: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<EncryptOutput, KmsError> {
        const OP: &str = "ReEncrypt";
        let req = self
            .inner
            .re_encrypt()
            .source_key_id(source_key_id)
            .ciphertext_blob(Blob::new(ciphertext_blob))
            .set_source_encryption_context(context_map(source_context))
            .destination_key_id(destination_key_id)
            .set_destination_encryption_context(context_map(destination_context))
            .set_grant_tokens(tokens(grant_tokens));
        let out = on_tokio(req.send()).await.map_err(|e| classify(OP, source_key_id, e))?;
        let mut output = encrypt_output(OP, destination_key_id, out.key_id(), out.ciphertext_blob())?;
        output.source_key_id =
            Some(out.source_key_id().ok_or_else(|| missing(OP, source_key_id, "SourceKeyId"))?.to_owned());
        Ok(output)
    }
}

/// Gives one KMS client per Region, created on first use and reused.
pub trait ClientSupplier: Send + Sync + fmt::Debug {
    /// The client for `region`.
    fn client(&self, region: &str) -> Result<Arc<dyn KmsClient>>;
    /// The Region used for identifiers that name none (aliases, bare key ids).
    fn default_region(&self) -> Option<&str>;
}

/// [`ClientSupplier`] over one shared `aws-config` configuration; each Region gets its own
/// `aws-sdk-kms` client with the same credentials, endpoint, retry and timeout settings.
pub struct AwsSdkClientSupplier {
    config: aws_config::SdkConfig,
    clients: Mutex<HashMap<String, Arc<dyn KmsClient>>>,
}

impl fmt::Debug for AwsSdkClientSupplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let regions: Vec<String> = self.clients.lock().map(|c| c.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("AwsSdkClientSupplier")
            .field("default_region", &self.default_region())
            .field("regions", &regions)
            .finish()
    }
}

impl AwsSdkClientSupplier {
    /// A supplier from the standard AWS environment.
    pub async fn from_env() -> Self {
        Self::from_sdk_config(load_sdk_config().await)
    }

    /// A supplier over an existing configuration.
    pub fn from_sdk_config(config: aws_config::SdkConfig) -> Self {
        Self { config, clients: Mutex::new(HashMap::new()) }
    }
}

impl ClientSupplier for AwsSdkClientSupplier {
    fn client(&self, region: &str) -> Result<Arc<dyn KmsClient>> {
        if region.is_empty() {
            return Err(Error::InvalidConfig("an empty AWS Region".into()));
        }
        let mut clients = self.clients.lock().map_err(|_| Error::InvalidConfig("KMS client cache poisoned".into()))?;
        let client = clients.entry(region.to_owned()).or_insert_with(|| {
            let conf = aws_sdk_kms::config::Builder::from(&self.config)
                .region(aws_sdk_kms::config::Region::new(region.to_owned()))
                .build();
            Arc::new(AwsSdkKmsClient::new(aws_sdk_kms::Client::from_conf(conf)))
        });
        Ok(client.clone())
    }

    fn default_region(&self) -> Option<&str> {
        self.config.region().map(|r| r.as_ref())
    }
}
