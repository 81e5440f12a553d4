//! The local AWS endpoint (moto with `scripts/moto_plus.py`) as the tests see it: SDK clients,
//! key administration, fault injection and call counters.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use esdk::keyring::kms::{
    AwsSdkKmsClient, DecryptOutput, EncryptOutput, GenerateDataKeyOutput, KmsClient, KmsError, KmsRsaAlgorithm,
};
use esdk::EncryptionContext;

/// The account id moto uses.
pub const ACCOUNT: &str = "123456789012";

/// The endpoint started by `scripts/test` (`MOTO_ENDPOINT`).
#[derive(Clone, Debug)]
pub struct Endpoint {
    url: String,
}

impl Endpoint {
    pub fn from_env() -> Self {
        match std::env::var("MOTO_ENDPOINT") {
            Ok(url) => Self { url },
            Err(_) => super::missing(
                "the local AWS endpoint is not running (MOTO_ENDPOINT is unset; run the test through scripts/test, \
                 or under scripts/with-aws-endpoint with --include-ignored)",
            ),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A command for `program` (a binary of the workspace) that reaches this endpoint with the
    /// test credentials and no instance metadata lookups.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    /// SDK configuration for `region` with test credentials and fast retries (3 attempts).
    pub fn kms_config(&self, region: &str) -> aws_sdk_kms::Config {
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(&self.url)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "esdk-tests"))
            .retry_config(
                aws_sdk_kms::config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .timeout_config(
                aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .build(),
            )
            .build()
    }

    pub fn admin(&self, region: &str) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::from_conf(self.kms_config(region))
    }

    /// The crate's KMS client for `region`.
    pub fn kms(&self, region: &str) -> Arc<dyn KmsClient> {
        Arc::new(AwsSdkKmsClient::new(self.admin(region)))
    }

    /// Shared configuration as users load it (from the environment `scripts/test` sets), in `region`.
    pub fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .endpoint_url(&self.url)
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "esdk-tests",
            )))
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .build()
    }

    /// Kinesis client for `region` (3 attempts, 10 ms initial backoff).
    pub fn kinesis(&self, region: &str) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.sdk_config(region))
    }

    /// DynamoDB client for `region`.
    pub fn dynamodb(&self, region: &str) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config(region))
    }

    /// Creates a stream with `shards` shards (moto makes it ACTIVE at once).
    pub async fn create_stream(&self, region: &str, stream: &str, shards: i32) {
        self.kinesis(region)
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
    }

    /// A single-Region symmetric key; returns its ARN.
    pub async fn create_key(&self, region: &str) -> String {
        let out = self.admin(region).create_key().send().await.expect("CreateKey");
        out.key_metadata().and_then(|m| m.arn()).expect("key ARN").to_owned()
    }

    /// A new RSA `ENCRYPT_DECRYPT` key of `bits` (2048, 3072 or 4096) in `region`: its ARN and
    /// its public key as PEM (what the AWS KMS RSA keyring encrypts with).
    pub async fn create_rsa_key(&self, region: &str, bits: u32) -> (String, String) {
        use aws_sdk_kms::types::{KeySpec, KeyUsageType};
        let spec = match bits {
            2048 => KeySpec::Rsa2048,
            3072 => KeySpec::Rsa3072,
            4096 => KeySpec::Rsa4096,
            other => panic!("KMS has no {other}-bit RSA keys"),
        };
        let kms = self.admin(region);
        let out = kms
            .create_key()
            .key_spec(spec)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .send()
            .await
            .expect("CreateKey RSA");
        let arn = out.key_metadata().and_then(|m| m.arn()).expect("key ARN").to_owned();
        let public = kms.get_public_key().key_id(&arn).send().await.expect("GetPublicKey");
        let der = public.public_key().expect("public key").as_ref();
        let pem = pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, der).expect("PEM");
        (arn, pem)
    }

    /// A multi-Region key in `primary` replicated to `replica`; returns both ARNs.
    pub async fn create_mrk(&self, primary: &str, replica: &str) -> (String, String) {
        let out = self.admin(primary).create_key().multi_region(true).send().await.expect("CreateKey MRK");
        let meta = out.key_metadata().expect("metadata");
        let arn = meta.arn().expect("ARN").to_owned();
        let out = self
            .admin(primary)
            .replicate_key()
            .key_id(meta.key_id())
            .replica_region(replica)
            .send()
            .await
            .expect("ReplicateKey");
        let replica_arn = out.replica_key_metadata().and_then(|m| m.arn()).expect("replica ARN").to_owned();
        (arn, replica_arn)
    }

    fn bare_id(arn: &str) -> &str {
        arn.rsplit('/').next().unwrap_or(arn)
    }

    pub async fn disable_key(&self, region: &str, arn: &str) {
        self.admin(region).disable_key().key_id(Self::bare_id(arn)).send().await.expect("DisableKey");
    }

    pub async fn schedule_deletion(&self, region: &str, arn: &str) {
        self.admin(region)
            .schedule_key_deletion()
            .key_id(Self::bare_id(arn))
            .pending_window_in_days(7)
            .send()
            .await
            .expect("ScheduleKeyDeletion");
    }

    pub async fn create_alias(&self, region: &str, alias: &str, arn: &str) {
        self.admin(region)
            .create_alias()
            .alias_name(alias)
            .target_key_id(Self::bare_id(arn))
            .send()
            .await
            .expect("CreateAlias");
    }

    /// Makes the next `count` requests for `target` in `region` fail with `code`.
    pub async fn inject_fault(&self, target: &str, region: &str, count: u32, code: &str) {
        let body = format!(
            r#"{{"target": "{target}", "region": "{region}", "count": {count}, "status": 400, "code": "{code}"}}"#
        );
        self.http("POST", "/_fault", &body).await;
    }

    /// Makes the next `count` requests for `target` (`*` for any) in `region` fail with HTTP
    /// `status` and `code`.
    pub async fn inject_fault_status(&self, target: &str, region: &str, count: u32, status: u16, code: &str) {
        let body = format!(
            r#"{{"target": "{target}", "region": "{region}", "count": {count}, "status": {status}, "code": "{code}"}}"#
        );
        self.http("POST", "/_fault", &body).await;
    }

    /// Makes each request for `target` (`*` for any) in `region` fail with chance `probability`
    /// (seeded), with HTTP `status` and `code`, until `count` have failed.
    pub async fn inject_probability(
        &self,
        target: &str,
        region: &str,
        probability: f64,
        seed: u64,
        status: u16,
        code: &str,
    ) {
        let body = format!(
            r#"{{"target": "{target}", "region": "{region}", "count": 1000000000, "status": {status}, "code": "{code}", "probability": {probability}, "seed": {seed}}}"#
        );
        self.http("POST", "/_fault", &body).await;
    }

    /// Makes single `PutRecords` entries in `region` fail with chance `probability` (the rest of
    /// each request is stored), as Kinesis does under load.
    pub async fn inject_entry_faults(&self, region: &str, probability: f64, seed: u64) {
        let body = format!(
            r#"{{"target": "PutRecords", "region": "{region}", "count": 1000000000, "entry_probability": {probability}, "seed": {seed}}}"#
        );
        self.http("POST", "/_fault", &body).await;
    }

    /// Probabilistic faults on every API of the pipeline in `region` (the emulator's
    /// `/_chaos`): Kinesis, DynamoDB, KMS and SQS calls fail with chance `probability`
    /// (throttling and 5xx), and single `PutRecords` entries too.
    pub async fn inject_chaos(&self, region: &str, probability: f64, seed: u64) {
        let body = format!(r#"{{"region": "{region}", "probability": {probability}, "seed": {seed}}}"#);
        self.http("POST", "/_chaos", &body).await;
    }

    /// SQS client for `region`.
    pub fn sqs(&self, region: &str) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config(region))
    }

    /// Creates a queue; returns its URL.
    pub async fn create_queue(&self, region: &str, name: &str) -> String {
        let out = self.sqs(region).create_queue().queue_name(name).send().await.expect("CreateQueue");
        out.queue_url().expect("queue URL").to_owned()
    }

    /// Receives (and deletes) every message of a queue, as JSON.
    pub async fn drain_queue(&self, region: &str, url: &str) -> Vec<serde_json::Value> {
        let sqs = self.sqs(region);
        let mut all = Vec::new();
        loop {
            let out = sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.expect("Receive");
            if out.messages().is_empty() {
                return all;
            }
            for m in out.messages() {
                all.push(serde_json::from_str(m.body().unwrap_or("null")).expect("JSON message"));
                if let Some(h) = m.receipt_handle() {
                    sqs.delete_message().queue_url(url).receipt_handle(h).send().await.expect("Delete");
                }
            }
        }
    }

    /// Removes the pending faults of one Region only (tests in other Regions keep theirs).
    pub async fn clear_faults_in(&self, region: &str) {
        self.http("DELETE", &format!("/_fault?region={region}"), "").await;
    }

    pub async fn clear_faults(&self) {
        self.http("DELETE", "/_fault", "").await;
    }

    /// Request counts by `X-Amz-Target` and by `region:target`.
    pub async fn stats(&self) -> HashMap<String, u64> {
        let body = self.http("GET", "/_stats", "").await;
        serde_json::from_str(&body).expect("stats JSON")
    }

    async fn http(&self, method: &str, path: &str, body: &str) -> String {
        let addr = self.url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(&addr).expect("connect to the local AWS endpoint");
            stream.write_all(request.as_bytes()).expect("send");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("receive");
            assert!(response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"), "{response}");
            response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
        })
        .await
        .expect("HTTP task")
    }
}

/// Wraps a [`KmsClient`] and records every call as `(operation, KeyId)`.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn KmsClient>,
    calls: Mutex<Vec<(String, String)>>,
}

impl Counting {
    pub fn new(inner: Arc<dyn KmsClient>) -> Arc<Self> {
        Arc::new(Self { inner, calls: Mutex::new(Vec::new()) })
    }

    pub fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, op: &str, key_id: &str) {
        self.calls.lock().unwrap().push((op.to_owned(), key_id.to_owned()));
    }
}

#[async_trait]
impl KmsClient for Counting {
    fn region(&self) -> Option<&str> {
        self.inner.region()
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        n: usize,
        ec: &EncryptionContext,
        grants: &[String],
    ) -> Result<GenerateDataKeyOutput, KmsError> {
        self.record("GenerateDataKey", key_id);
        self.inner.generate_data_key(key_id, n, ec, grants).await
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        ec: &EncryptionContext,
        grants: &[String],
    ) -> Result<EncryptOutput, KmsError> {
        self.record("Encrypt", key_id);
        self.inner.encrypt(key_id, plaintext, ec, grants).await
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        ec: &EncryptionContext,
        grants: &[String],
    ) -> Result<DecryptOutput, KmsError> {
        self.record("Decrypt", key_id);
        self.inner.decrypt(key_id, ciphertext, ec, grants).await
    }

    async fn decrypt_rsa(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        algorithm: KmsRsaAlgorithm,
        grants: &[String],
    ) -> Result<DecryptOutput, KmsError> {
        self.record("Decrypt", key_id);
        self.inner.decrypt_rsa(key_id, ciphertext, algorithm, grants).await
    }

    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        n: usize,
        ec: &EncryptionContext,
        grants: &[String],
    ) -> Result<EncryptOutput, KmsError> {
        self.record("GenerateDataKeyWithoutPlaintext", key_id);
        self.inner.generate_data_key_without_plaintext(key_id, n, ec, grants).await
    }

    async fn re_encrypt(
        &self,
        source_key_id: &str,
        ciphertext: &[u8],
        source_ec: &EncryptionContext,
        destination_key_id: &str,
        destination_ec: &EncryptionContext,
        grants: &[String],
    ) -> Result<EncryptOutput, KmsError> {
        self.record("ReEncrypt", source_key_id);
        self.inner.re_encrypt(source_key_id, ciphertext, source_ec, destination_key_id, destination_ec, grants).await
    }
}
