//! The replication control table in DynamoDB: the active-Region flag and per-shard checkpoints.
//!
//! Schema: partition key `pk` (S), sort key `sk` (S), on-demand billing.
//! - `pk = "control"`, `sk = "active-region"`: attribute `region`.
//! - `pk = "checkpoint#<stream>"`, `sk = <shard id>`: `sequence_number`, `seq_key` (the sequence
//!   number zero-padded to 128 digits, so DynamoDB's string order is numeric order),
//!   `commit_time` (RFC 3339, optional), `updated_at`.
//!
//! In AWS, make it a global table so both Regions read the same flag and checkpoints; the
//! replicator writes checkpoints to the table in the destination Region, so they survive an
//! outage of the source Region.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::record::parse_commit_time;
use crate::{KinesisError, Result};

const SEQ_KEY_DIGITS: usize = 128;

/// A replication checkpoint: the last record of a shard known to be in the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkpoint {
    /// Logical stream name.
    pub stream: String,
    /// The Region whose stream is read (shard ids repeat across Regions).
    pub source_region: String,
    /// Source shard.
    pub shard_id: String,
    /// Sequence number (in the source shard) of the last replicated record.
    pub sequence_number: String,
    /// Commit time of that record, from its encryption context (possibly window-rounded).
    pub commit_time: Option<SystemTime>,
}

impl Checkpoint {
    /// A checkpoint of `shard_id` of `stream` read from `source_region`.
    pub fn new(
        stream: &str,
        source_region: &str,
        shard_id: &str,
        sequence_number: &str,
        commit_time: Option<SystemTime>,
    ) -> Self {
        Self {
            stream: stream.to_owned(),
            source_region: source_region.to_owned(),
            shard_id: shard_id.to_owned(),
            sequence_number: sequence_number.to_owned(),
            commit_time,
        }
    }
}

/// Result of a conditional checkpoint write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointWrite {
    /// Stored.
    Written,
    /// Refused: the stored checkpoint is already further along (another replicator instance
    /// got there first). Nothing was changed.
    Stale {
        /// The checkpoint in the table.
        current: Checkpoint,
    },
}

/// Handle on one control table in one Region.
#[derive(Clone, Debug)]
pub struct ControlTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl ControlTable {
    /// A handle; the table must exist (see [`Self::create_if_missing`]).
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Self { client, table: table.to_owned() }
    }

    /// Table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn err<E>(
        &self,
        op: &'static str,
        e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> KinesisError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        KinesisError::dynamodb(op, &self.table, e)
    }

    /// Creates the table with the schema above unless it exists.
    pub async fn create_if_missing(&self) -> Result<()> {
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => return Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(self.err("DescribeTable", &e)),
        }
        let attr = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let key = |name: &str, t| KeySchemaElement::builder().attribute_name(name).key_type(t).build();
        let built = (|| -> std::result::Result<_, aws_sdk_dynamodb::error::BuildError> {
            Ok((vec![attr("pk")?, attr("sk")?], vec![key("pk", KeyType::Hash)?, key("sk", KeyType::Range)?]))
        })();
        let (attrs, keys) = built.map_err(|e| KinesisError::InvalidConfig(e.to_string()))?;
        match self
            .client
            .create_table()
            .table_name(&self.table)
            .set_attribute_definitions(Some(attrs))
            .set_key_schema(Some(keys))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(()),
            Err(e) => Err(self.err("CreateTable", &e)),
        }
    }

    /// The Region currently allowed to produce and replicate (strongly consistent read).
    pub async fn active_region(&self) -> Result<Option<String>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("control"))
            .key("sk", s("active-region"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", &e))?;
        match out.item() {
            None => Ok(None),
            Some(item) => Ok(Some(self.string(item, "region")?.to_owned())),
        }
    }

    /// Sets the active Region (a failover is this call, on every Region's table).
    pub async fn set_active_region(&self, region: &str) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("control"))
            .item("sk", s("active-region"))
            .item("region", s(region))
            .item("updated_at", s(&humantime::format_rfc3339_millis(SystemTime::now()).to_string()))
            .send()
            .await
            .map_err(|e| self.err("PutItem", &e))?;
        Ok(())
    }

    /// Stores `cp` unless the stored checkpoint of its shard is further along.
    pub async fn write_checkpoint(&self, cp: &Checkpoint) -> Result<CheckpointWrite> {
        let digits = cp.sequence_number.trim_start_matches('0');
        if cp.sequence_number.is_empty()
            || digits.len() > SEQ_KEY_DIGITS
            || !cp.sequence_number.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(KinesisError::InvalidConfig(format!(
                "{:?} is not a Kinesis sequence number",
                cp.sequence_number
            )));
        }
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&checkpoint_pk(&cp.stream, &cp.source_region)))
            .item("sk", s(&cp.shard_id))
            .item("sequence_number", s(&cp.sequence_number))
            .item("seq_key", s(&format!("{digits:0>SEQ_KEY_DIGITS$}")))
            .item("updated_at", s(&humantime::format_rfc3339_millis(SystemTime::now()).to_string()))
            .condition_expression("attribute_not_exists(pk) OR seq_key <= :seq")
            .expression_attribute_values(":seq", s(&format!("{digits:0>SEQ_KEY_DIGITS$}")));
        if let Some(t) = cp.commit_time {
            put = put.item("commit_time", s(&humantime::format_rfc3339_millis(t).to_string()));
        }
        match put.send().await {
            Ok(_) => Ok(CheckpointWrite::Written),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                let current = self.checkpoint(&cp.stream, &cp.source_region, &cp.shard_id).await?.ok_or_else(|| {
                    KinesisError::ControlTable {
                        table: self.table.clone(),
                        reason: format!(
                            "conditional write for shard {} failed but no checkpoint is stored",
                            cp.shard_id
                        ),
                    }
                })?;
                Ok(CheckpointWrite::Stale { current })
            }
            Err(e) => Err(self.err("PutItem", &e)),
        }
    }

    /// The checkpoint of one shard.
    pub async fn checkpoint(&self, stream: &str, source_region: &str, shard_id: &str) -> Result<Option<Checkpoint>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&checkpoint_pk(stream, source_region)))
            .key("sk", s(shard_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", &e))?;
        out.item().map(|item| self.parse_checkpoint(stream, source_region, item)).transpose()
    }

    /// Every shard checkpoint of `stream` read from `source_region`.
    pub async fn checkpoints(&self, stream: &str, source_region: &str) -> Result<Vec<Checkpoint>> {
        let mut all = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&checkpoint_pk(stream, source_region)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Query", &e))?;
            for item in out.items() {
                all.push(self.parse_checkpoint(stream, source_region, item)?);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(all),
            }
        }
    }

    /// Where a producer taking over in another Region resumes: the smallest commit time over
    /// the shard checkpoints (every record committed before it has been replicated). `None`
    /// when no checkpoint carries a commit time (resume from the beginning).
    pub async fn resume_commit_time(&self, stream: &str, source_region: &str) -> Result<Option<SystemTime>> {
        Ok(self.checkpoints(stream, source_region).await?.into_iter().filter_map(|c| c.commit_time).min())
    }

    fn string<'a>(&self, item: &'a HashMap<String, AttributeValue>, name: &str) -> Result<&'a str> {
        item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str).ok_or_else(|| KinesisError::ControlTable {
            table: self.table.clone(),
            reason: format!("item lacks the string attribute {name:?}"),
        })
    }

    fn parse_checkpoint(
        &self,
        stream: &str,
        source_region: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Checkpoint> {
        let commit_time = match item.get("commit_time").and_then(|v| v.as_s().ok()) {
            Some(t) => Some(
                parse_commit_time(t)
                    .map_err(|e| KinesisError::ControlTable { table: self.table.clone(), reason: e.to_string() })?,
            ),
            None => None,
        };
        Ok(Checkpoint {
            stream: stream.to_owned(),
            source_region: source_region.to_owned(),
            shard_id: self.string(item, "sk")?.to_owned(),
            sequence_number: self.string(item, "sequence_number")?.to_owned(),
            commit_time,
        })
    }
}

fn checkpoint_pk(stream: &str, source_region: &str) -> String {
    format!("checkpoint#{stream}#{source_region}")
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}
