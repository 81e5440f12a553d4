//! The replication control table in DynamoDB: the fenced active-Region flag, the replicator's
//! per-shard checkpoints and failover watermarks, and consumer-group checkpoints.
//!
//! Schema: partition key `pk` (S), sort key `sk` (S), on-demand billing.
//! - `pk = "flag#<stream>"`, `sk = "active-region"`: `region`, `epoch` (N, +1 per change),
//!   `updated_at`. Changed only with a compare-and-set on `epoch`.
//! - `pk = "checkpoint#<stream>#<source Region>"`, `sk = <shard id>`: one item per source shard
//!   the replicator knows (registered when first listed, so shards not yet read count for the
//!   failover watermark): `parents` (L of S), optional `sequence_number` / `seq_key` (the last
//!   replicated record; `seq_key` is it zero-padded to 128 digits so DynamoDB's string order is
//!   numeric order), optional `watermark` (RFC 3339: a lower bound of the commit times of the
//!   records after the checkpoint, see [`crate::Replicator`]), `finished` (BOOL: the shard is
//!   closed and replicated to its end), `updated_at`.
//! - `pk = "lease#<stream>#<source Region>"`, `sk = "owner"`: the long-running replicator that
//!   owns the replication of the stream (`owner`, `expires_at` in epoch milliseconds), taken over
//!   by another instance only after it expired.
//! - `pk = "consumer#<group>#<stream>#<Region>"`, `sk = <shard id>`: a consumer group's
//!   position (`sequence_number`, `sub_sequence`, `finished`) and the identities of the records it
//!   delivered last (`identities`, B), written together after the application acknowledged them.
//!
//! In AWS, make it a global table so both Regions read the same flag and checkpoints; the
//! replicator writes checkpoints to the table in the destination Region, so they survive an
//! outage of the source Region.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::record::parse_commit_time;
use crate::{KinesisError, Result};

const SEQ_KEY_DIGITS: usize = 128;

/// Which Region may produce, and the epoch of that decision.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActiveRegion {
    /// The active Region.
    pub region: String,
    /// Incremented by every change; a change names the epoch it replaces.
    pub epoch: u64,
}

/// A replication checkpoint: the last record of a source shard known to be in the destination.
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
    /// A lower bound of the commit times of the records of this shard not yet replicated
    /// (see [`crate::Replicator`]); `None` when nothing bounds them.
    pub watermark: Option<SystemTime>,
    /// The shard is closed and every record of it is replicated.
    pub finished: bool,
}

impl Checkpoint {
    /// A checkpoint of `shard_id` of `stream` read from `source_region`.
    pub fn new(
        stream: &str,
        source_region: &str,
        shard_id: &str,
        sequence_number: &str,
        watermark: Option<SystemTime>,
    ) -> Self {
        Self {
            stream: stream.to_owned(),
            source_region: source_region.to_owned(),
            shard_id: shard_id.to_owned(),
            sequence_number: sequence_number.to_owned(),
            watermark,
            finished: false,
        }
    }

    /// The same checkpoint, marking the shard as replicated to its end.
    pub fn finished(mut self) -> Self {
        self.finished = true;
        self
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
        /// The position in the table.
        current: Option<String>,
    },
}

/// What the control table knows about one source shard.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardProgress {
    /// Source shard.
    pub shard_id: String,
    /// Its parent shards (as listed by Kinesis when it was registered).
    pub parents: Vec<String>,
    /// The last replicated record, if any.
    pub sequence_number: Option<String>,
    /// Lower bound of the commit times of its records not yet replicated; `None`: unknown.
    pub watermark: Option<SystemTime>,
    /// Replicated to its end.
    pub finished: bool,
}

/// Where producers taking over in another Region must start replaying.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResumePoint {
    /// Replay records committed at or after this time; `None`: from the beginning (some shard
    /// that is not replicated to its end has no watermark).
    pub from: Option<SystemTime>,
    /// The shards that were considered.
    pub shards: Vec<ShardProgress>,
}

/// A consumer group's position in one shard, and the identities it delivered last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerPosition {
    /// The last record handed over and acknowledged (`None`: nothing yet).
    pub sequence_number: Option<String>,
    /// Records of an aggregate at or before this sub-sequence number are done (KCL style).
    pub sub_sequence: Option<u64>,
    /// The shard is closed and consumed to its end.
    pub finished: bool,
    /// Identity digests of recently delivered records (for recognising replays).
    pub identities: Vec<[u8; 16]>,
}

/// Who owns a stream's replication, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The owner's id.
    pub owner: String,
    /// When it expires unless renewed.
    pub expires_at: SystemTime,
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

    /// The DynamoDB client.
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub(crate) fn err<E>(
        &self,
        op: &'static str,
        e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> KinesisError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        KinesisError::dynamodb(op, &self.table, e)
    }

    fn bad(&self, reason: impl Into<String>) -> KinesisError {
        KinesisError::ControlTable { table: self.table.clone(), reason: reason.into() }
    }

    /// Waits (up to `timeout`) until the table is ACTIVE (a new table takes seconds in AWS).
    pub async fn wait_until_active(&self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.err("DescribeTable", &e))?;
            let status = out.table().and_then(|t| t.table_status()).map(|s| s.as_str().to_owned());
            if status.as_deref() == Some("ACTIVE") {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(self.bad(format!("the table is still {} after {timeout:?}", status.unwrap_or_default())));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Creates the table with the schema above unless it exists; returns whether it created it.
    pub async fn create_if_missing(&self) -> Result<bool> {
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => return Ok(false),
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
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(false),
            Err(e) => Err(self.err("CreateTable", &e)),
        }
    }

    /// The Region currently allowed to produce, with its epoch (strongly consistent read). A
    /// missing flag is [`KinesisError::FlagMissing`] (retryable: the table may be being set up),
    /// never "another Region is active".
    pub async fn active_region(&self, stream: &str) -> Result<ActiveRegion> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&flag_pk(stream)))
            .key("sk", s("active-region"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", &e))?;
        let Some(item) = out.item() else {
            return Err(KinesisError::FlagMissing { table: self.table.clone(), stream: stream.to_owned() });
        };
        Ok(ActiveRegion { region: self.string(item, "region")?.to_owned(), epoch: self.number(item, "epoch")? })
    }

    /// Sets the first active Region of `stream` unless one is set; returns the flag as stored.
    pub async fn init_active_region(&self, stream: &str, region: &str) -> Result<(ActiveRegion, bool)> {
        match self.write_flag(stream, region, None).await {
            Ok(flag) => Ok((flag, true)),
            Err(KinesisError::FlagConflict { current, .. }) => Ok((current, false)),
            Err(e) => Err(e),
        }
    }

    /// Sets the active Region, fenced: succeeds only if the stored epoch is `expected_epoch`, and
    /// stores `expected_epoch + 1`. Two operators or two Regions flipping the flag at once cannot
    /// both win: the loser gets [`KinesisError::FlagConflict`] with the winner's flag.
    pub async fn set_active_region(&self, stream: &str, region: &str, expected_epoch: u64) -> Result<ActiveRegion> {
        self.write_flag(stream, region, Some(expected_epoch)).await
    }

    async fn write_flag(&self, stream: &str, region: &str, expected_epoch: Option<u64>) -> Result<ActiveRegion> {
        let epoch = expected_epoch.map_or(1, |e| e + 1);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&flag_pk(stream)))
            .item("sk", s("active-region"))
            .item("region", s(region))
            .item("epoch", n(epoch))
            .item("updated_at", s(&now_rfc3339()));
        put = match expected_epoch {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(e) => put.condition_expression("epoch = :expected").expression_attribute_values(":expected", n(e)),
        };
        match put.send().await {
            Ok(_) => Ok(ActiveRegion { region: region.to_owned(), epoch }),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                let current = self.active_region(stream).await?;
                Err(KinesisError::FlagConflict { table: self.table.clone(), expected: expected_epoch, current })
            }
            Err(e) => Err(self.err("PutItem", &e)),
        }
    }

    /// Registers source shards so that the failover watermark accounts for them before they are
    /// read: each gets an item with its parents and `watermark` unless one exists.
    pub async fn register_shard(
        &self,
        stream: &str,
        source_region: &str,
        shard_id: &str,
        parents: &[String],
        watermark: Option<SystemTime>,
    ) -> Result<()> {
        let parents = AttributeValue::L(parents.iter().map(|p| s(p)).collect());
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&checkpoint_pk(stream, source_region)))
            .item("sk", s(shard_id))
            .item("parents", parents)
            .item("finished", AttributeValue::Bool(false))
            .item("updated_at", s(&now_rfc3339()))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(w) = watermark {
            put = put.item("watermark", s(&rfc3339(w)));
        }
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.err("PutItem", &e)),
        }
    }

    /// Stores `cp` unless the stored checkpoint of its shard is further along (or finished).
    pub async fn write_checkpoint(&self, cp: &Checkpoint) -> Result<CheckpointWrite> {
        let seq_key = seq_key(&cp.sequence_number)?;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&checkpoint_pk(&cp.stream, &cp.source_region)))
            .key("sk", s(&cp.shard_id))
            .condition_expression(
                "(attribute_not_exists(seq_key) OR seq_key <= :seq) AND (attribute_not_exists(finished) OR finished = :no)",
            )
            .expression_attribute_values(":seq", s(&seq_key))
            .expression_attribute_values(":sn", s(&cp.sequence_number))
            .expression_attribute_values(":fin", AttributeValue::Bool(cp.finished))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":now", s(&now_rfc3339()));
        let mut set = "SET sequence_number = :sn, seq_key = :seq, finished = :fin, updated_at = :now".to_owned();
        match cp.watermark {
            Some(w) => {
                set.push_str(", watermark = :w");
                update = update.expression_attribute_values(":w", s(&rfc3339(w)));
            }
            None if cp.finished => set.push_str(" REMOVE watermark"),
            None => {}
        }
        match update.update_expression(set).send().await {
            Ok(_) => Ok(CheckpointWrite::Written),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                let current = self.shard_progress(&cp.stream, &cp.source_region, &cp.shard_id).await?;
                Ok(CheckpointWrite::Stale { current: current.and_then(|c| c.sequence_number) })
            }
            Err(e) => Err(self.err("UpdateItem", &e)),
        }
    }

    /// Sets the watermark of a shard whose position did not move (its batch failed at its first
    /// record): the records read but not replicated must count for the resume point.
    pub async fn set_watermark(
        &self,
        stream: &str,
        source_region: &str,
        shard_id: &str,
        watermark: SystemTime,
    ) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&checkpoint_pk(stream, source_region)))
            .key("sk", s(shard_id))
            .update_expression("SET watermark = :w, updated_at = :now")
            .expression_attribute_values(":w", s(&rfc3339(watermark)))
            .expression_attribute_values(":now", s(&now_rfc3339()))
            .send()
            .await
            .map_err(|e| self.err("UpdateItem", &e))?;
        Ok(())
    }

    /// Marks a shard replicated to its end without moving its position (Lambda mode: the event
    /// source mapping reads a child shard only after its parents are read to their end, so the
    /// first checkpoint of a child finishes its parents). Its watermark no longer counts.
    pub async fn finish_shard(&self, stream: &str, source_region: &str, shard_id: &str) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&checkpoint_pk(stream, source_region)))
            .key("sk", s(shard_id))
            .update_expression("SET finished = :yes, updated_at = :now REMOVE watermark")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":now", s(&now_rfc3339()))
            .send()
            .await
            .map_err(|e| self.err("UpdateItem", &e))?;
        Ok(())
    }

    /// What the table knows about one source shard.
    pub async fn shard_progress(
        &self,
        stream: &str,
        source_region: &str,
        shard_id: &str,
    ) -> Result<Option<ShardProgress>> {
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
        out.item().map(|item| self.parse_progress(item)).transpose()
    }

    /// Every source shard of `stream` read from `source_region` that the table knows.
    pub async fn shards(&self, stream: &str, source_region: &str) -> Result<Vec<ShardProgress>> {
        self.query(&checkpoint_pk(stream, source_region)).await?.iter().map(|i| self.parse_progress(i)).collect()
    }

    /// Where a producer taking over in another Region resumes: the smallest watermark over every
    /// registered shard not replicated to its end, minus `margin` (the commit-time disorder the
    /// producers are allowed); `from: None` (the beginning) when a shard has no watermark or no
    /// shard is registered.
    pub async fn resume_point(&self, stream: &str, source_region: &str, margin: Duration) -> Result<ResumePoint> {
        let shards = self.shards(stream, source_region).await?;
        let open: Vec<&ShardProgress> = shards.iter().filter(|p| !p.finished).collect();
        let from = if shards.is_empty() || open.iter().any(|p| p.watermark.is_none()) {
            None
        } else {
            open.iter()
                .filter_map(|p| p.watermark)
                .min()
                .map(|w| w.checked_sub(margin).unwrap_or(SystemTime::UNIX_EPOCH))
                // Every shard is replicated to its end: nothing needs replaying before now.
                .or_else(|| Some(SystemTime::now()))
        };
        Ok(ResumePoint { from, shards })
    }

    /// Takes (or renews) the replication lease of `stream` read from `source_region` for `owner`
    /// until `ttl` from now, if it is free, expired or already `owner`'s. `Ok(None)`: another
    /// instance holds it (returned as `Err` only for failed calls).
    pub async fn acquire_lease(
        &self,
        stream: &str,
        source_region: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let now = epoch_millis(SystemTime::now());
        let expires_at = SystemTime::now() + ttl;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&lease_pk(stream, source_region)))
            .item("sk", s("owner"))
            .item("owner", s(owner))
            .item("expires_at", n(epoch_millis(expires_at)))
            .item("updated_at", s(&now_rfc3339()))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now OR #o = :me")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":me", s(owner));
        match put.send().await {
            Ok(_) => Ok(Some(Lease { owner: owner.to_owned(), expires_at })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(self.err("PutItem", &e)),
        }
    }

    /// Gives the lease up (if `owner` holds it), so a standby takes over at once.
    pub async fn release_lease(&self, stream: &str, source_region: &str, owner: &str) -> Result<()> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&lease_pk(stream, source_region)))
            .key("sk", s("owner"))
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", s(owner));
        match delete.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.err("DeleteItem", &e)),
        }
    }

    /// The current lease holder, if any (expired leases included: check `expires_at`).
    pub async fn lease(&self, stream: &str, source_region: &str) -> Result<Option<Lease>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&lease_pk(stream, source_region)))
            .key("sk", s("owner"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", &e))?;
        out.item()
            .map(|item| {
                let ms = self.number(item, "expires_at")?;
                Ok(Lease {
                    owner: self.string(item, "owner")?.to_owned(),
                    expires_at: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
                })
            })
            .transpose()
    }

    /// A consumer group's positions in every shard of `stream` in `region`.
    pub async fn consumer_positions(
        &self,
        group: &str,
        stream: &str,
        region: &str,
    ) -> Result<HashMap<String, ConsumerPosition>> {
        let mut out = HashMap::new();
        for item in self.query(&consumer_pk(group, stream, region)).await? {
            let shard = self.string(&item, "sk")?.to_owned();
            let identities = match item.get("identities").and_then(|v| v.as_b().ok()) {
                Some(b) if b.as_ref().len() % 16 == 0 => {
                    b.as_ref().chunks_exact(16).map(|c| c.try_into().unwrap_or([0u8; 16])).collect()
                }
                Some(_) => return Err(self.bad(format!("consumer item {shard}: identities are not 16-byte digests"))),
                None => Vec::new(),
            };
            let position = ConsumerPosition {
                sequence_number: item.get("sequence_number").and_then(|v| v.as_s().ok()).cloned(),
                sub_sequence: item.get("sub_sequence").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()),
                finished: item.get("finished").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
                identities,
            };
            out.insert(shard, position);
        }
        Ok(out)
    }

    /// Stores a consumer group's position in one shard (never moving it back).
    pub async fn write_consumer_position(
        &self,
        group: &str,
        stream: &str,
        region: &str,
        shard_id: &str,
        position: &ConsumerPosition,
    ) -> Result<CheckpointWrite> {
        let Some(seq) = &position.sequence_number else {
            return Err(KinesisError::InvalidConfig("a consumer position needs a sequence number".into()));
        };
        let sub = position.sub_sequence.unwrap_or(u64::MAX);
        let key = format!("{}#{sub:020}", seq_key(seq)?);
        let identities: Vec<u8> = position.identities.iter().flatten().copied().collect();
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&consumer_pk(group, stream, region)))
            .item("sk", s(shard_id))
            .item("sequence_number", s(seq))
            .item("position_key", s(&key))
            .item("finished", AttributeValue::Bool(position.finished))
            .item("updated_at", s(&now_rfc3339()))
            .condition_expression("attribute_not_exists(position_key) OR position_key <= :k")
            .expression_attribute_values(":k", s(&key));
        if let Some(sub) = position.sub_sequence {
            put = put.item("sub_sequence", n(sub));
        }
        if !identities.is_empty() {
            put = put.item("identities", AttributeValue::B(Blob::new(identities)));
        }
        match put.send().await {
            Ok(_) => Ok(CheckpointWrite::Written),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Ok(CheckpointWrite::Stale { current: None })
            }
            Err(e) => Err(self.err("PutItem", &e)),
        }
    }

    async fn query(&self, pk: &str) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let mut all = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Query", &e))?;
            all.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(all),
            }
        }
    }

    fn string<'a>(&self, item: &'a HashMap<String, AttributeValue>, name: &str) -> Result<&'a str> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            .ok_or_else(|| self.bad(format!("item lacks the string attribute {name:?}")))
    }

    fn number(&self, item: &HashMap<String, AttributeValue>, name: &str) -> Result<u64> {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.bad(format!("item lacks the number attribute {name:?}")))
    }

    fn time(&self, item: &HashMap<String, AttributeValue>, name: &str) -> Result<Option<SystemTime>> {
        match item.get(name).and_then(|v| v.as_s().ok()) {
            Some(t) => parse_commit_time(t).map(Some).map_err(|e| self.bad(e.to_string())),
            None => Ok(None),
        }
    }

    fn parse_progress(&self, item: &HashMap<String, AttributeValue>) -> Result<ShardProgress> {
        let parents = match item.get("parents").and_then(|v| v.as_l().ok()) {
            Some(l) => l.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
            None => Vec::new(),
        };
        Ok(ShardProgress {
            shard_id: self.string(item, "sk")?.to_owned(),
            parents,
            sequence_number: item.get("sequence_number").and_then(|v| v.as_s().ok()).cloned(),
            watermark: self.time(item, "watermark")?,
            finished: item.get("finished").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        })
    }
}

/// A sequence number zero-padded to 128 digits (DynamoDB compares strings bytewise).
fn seq_key(sequence_number: &str) -> Result<String> {
    let digits = sequence_number.trim_start_matches('0');
    if sequence_number.is_empty()
        || digits.len() > SEQ_KEY_DIGITS
        || !sequence_number.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(KinesisError::InvalidConfig(format!("{sequence_number:?} is not a Kinesis sequence number")));
    }
    Ok(format!("{digits:0>SEQ_KEY_DIGITS$}"))
}

fn flag_pk(stream: &str) -> String {
    format!("flag#{stream}")
}

fn checkpoint_pk(stream: &str, source_region: &str) -> String {
    format!("checkpoint#{stream}#{source_region}")
}

fn lease_pk(stream: &str, source_region: &str) -> String {
    format!("lease#{stream}#{source_region}")
}

fn epoch_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn consumer_pk(group: &str, stream: &str, region: &str) -> String {
    format!("consumer#{group}#{stream}#{region}")
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
