//! The demo's resources in each Region: SDK clients, the multi-Region KMS key, the stream and
//! the control table with its active-Region flag.

use std::sync::Arc;
use std::time::Duration;

use esdk::keyring::kms::{AwsSdkKmsClient, KmsClient, KmsMrkKeyring, MeteredKmsClient};
use esdk::{CachingCmm, DefaultCmm, LocalCache, MaterialsManager};
use esdk_kinesis::{ops, ControlTable};

use crate::DemoResult;

/// SDK configuration for one Region from the (possibly adjusted) standard environment.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .load()
        .await
}

/// One Region of the pipeline.
pub struct Side {
    pub region: String,
    pub kinesis: aws_sdk_kinesis::Client,
    pub control: ControlTable,
    pub kms: Arc<MeteredKmsClient>,
    pub key_arn: String,
}

impl Side {
    pub async fn new(region: &str, table: &str) -> Self {
        let cfg = sdk_config(region).await;
        Self {
            region: region.to_owned(),
            kinesis: aws_sdk_kinesis::Client::new(&cfg),
            control: ControlTable::new(aws_sdk_dynamodb::Client::new(&cfg), table),
            kms: MeteredKmsClient::new(Arc::new(AwsSdkKmsClient::new(aws_sdk_kms::Client::new(&cfg)))),
            key_arn: String::new(),
        }
    }

    /// A caching CMM over an MRK-aware strict keyring naming only this Region's key ARN.
    pub fn cmm(&self, partition: &str) -> DemoResult<Arc<dyn MaterialsManager>> {
        let kms: Arc<dyn KmsClient> = self.kms.clone();
        let keyring = KmsMrkKeyring::new(&self.key_arn, kms).map_err(|e| e.to_string())?;
        let cache = Arc::new(LocalCache::new(1000).map_err(|e| e.to_string())?);
        let cmm = CachingCmm::new(Arc::new(DefaultCmm::new(keyring)), cache, Duration::from_secs(300))
            .and_then(|c| c.with_max_messages(10_000))
            .map_err(|e| e.to_string())?
            .with_partition_id(partition);
        Ok(Arc::new(cmm))
    }
}

/// Creates the stream unless it exists and waits until it is active.
pub async fn create_stream(side: &Side, stream: &str, shards: i32) -> DemoResult<()> {
    let created = side.kinesis.create_stream().stream_name(stream).shard_count(shards).send().await;
    if let Err(e) = created {
        if !e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) {
            return Err(format!(
                "CreateStream {stream} in {}: {}",
                side.region,
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            ));
        }
    }
    for _ in 0..600 {
        let d = side.kinesis.describe_stream_summary().stream_name(stream).send().await.map_err(|e| {
            format!(
                "DescribeStreamSummary {stream} in {}: {}",
                side.region,
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )
        })?;
        if d.stream_description_summary().map(|s| s.stream_status().as_str()) == Some("ACTIVE") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("stream {stream} in {} did not become ACTIVE within 5 minutes", side.region))
}

/// A multi-Region key with its primary in `a` and a replica in `b`; returns both ARNs.
pub async fn create_mrk(a: &Side, b: &Side) -> DemoResult<(String, String)> {
    let kms_a = aws_sdk_kms::Client::new(&sdk_config(&a.region).await);
    let show = |e: &dyn std::fmt::Display| e.to_string();
    let out = kms_a.create_key().multi_region(true).description("esdk-pipeline demo").send().await.map_err(|e| {
        format!("KMS CreateKey in {}: {}", a.region, show(&aws_sdk_kms::error::DisplayErrorContext(&e)))
    })?;
    let meta = out.key_metadata().ok_or("CreateKey returned no metadata")?;
    let arn_a = meta.arn().ok_or("CreateKey returned no ARN")?.to_owned();
    let out = kms_a.replicate_key().key_id(meta.key_id()).replica_region(&b.region).send().await.map_err(|e| {
        format!("KMS ReplicateKey to {}: {}", b.region, show(&aws_sdk_kms::error::DisplayErrorContext(&e)))
    })?;
    let arn_b = out.replica_key_metadata().and_then(|m| m.arn()).ok_or("ReplicateKey returned no ARN")?.to_owned();
    Ok((arn_a, arn_b))
}

fn region_tables(sides: [&Side; 2]) -> Vec<ops::RegionTable> {
    sides.iter().map(|s| ops::RegionTable::new(&s.region, s.control.clone())).collect()
}

/// Creates the control tables and sets the first active Region in both (what `esdk kinesis
/// init` does; a global table does this once in AWS, the local endpoint has one per Region).
pub async fn control_tables(sides: [&Side; 2], stream: &str, active: &str) -> DemoResult<()> {
    ops::init(&region_tables(sides), stream, active).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// A fenced failover to `to` (what `esdk kinesis failover` does): returns the new epoch and
/// where producers in `to` resume (`None`: from the beginning). Safe to run again.
pub async fn fail_over(
    sides: [&Side; 2],
    stream: &str,
    to: &str,
    margin: Duration,
) -> DemoResult<(u64, Option<std::time::SystemTime>)> {
    let done = ops::fail_over(&region_tables(sides), stream, to, margin, false).await.map_err(|e| e.to_string())?;
    let epoch = done.regions.iter().filter_map(|r| r.after.as_ref()).map(|a| a.epoch).max().unwrap_or(0);
    Ok((epoch, done.resume_from))
}
