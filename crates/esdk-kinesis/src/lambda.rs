//! The replicator behind a Lambda event source mapping with `ReportBatchItemFailures`: the
//! mapping reads the source stream and hands batches of one shard over; [`LambdaReplicator`]
//! forwards them, checkpoints them (the failover watermark needs the checkpoints even though the
//! mapping keeps its own position), registers shards the table does not know and marks parents
//! finished, and names the records Lambda must retry. The `esdk-replicator` binary runs it on
//! `lambda_runtime`.

use std::collections::{HashMap, HashSet};

use crate::{BatchOutcome, CheckpointWrite, KinesisError, Replicator, Result, SourceRecord};

/// A Kinesis stream ARN, `arn:<partition>:kinesis:<region>:<account>:stream/<name>` (the
/// `eventSourceARN` of every record of an event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamArn {
    /// Partition (`aws`, `aws-cn`, ...).
    pub partition: String,
    /// Region.
    pub region: String,
    /// Account id.
    pub account: String,
    /// Stream name.
    pub stream: String,
}

impl StreamArn {
    /// Parses a stream ARN (a consumer ARN `.../consumer/...` names its stream too).
    pub fn parse(arn: &str) -> Result<Self> {
        let bad = |why: &str| KinesisError::InvalidEvent(format!("eventSourceARN {arn:?} {why}"));
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts[..] else {
            return Err(bad("is not an ARN"));
        };
        if prefix != "arn" || service != "kinesis" {
            return Err(bad("is not a Kinesis ARN"));
        }
        let stream = resource
            .strip_prefix("stream/")
            .map(|s| s.split_once("/consumer/").map_or(s, |(stream, _)| stream))
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| bad("names no stream"))?;
        if partition.is_empty() || region.is_empty() {
            return Err(bad("lacks a partition or Region"));
        }
        Ok(Self {
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            stream: stream.to_owned(),
        })
    }
}

/// What one invocation did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct LambdaBatch {
    /// The replication outcome (`None`: the batch failed as a whole, see `error`).
    pub outcome: Option<BatchOutcome>,
    /// Why the whole batch failed (every shard is retried from its first record).
    pub error: Option<KinesisError>,
    /// Sequence numbers for `batchItemFailures`: per shard, the first record not handled
    /// (Lambda retries from the lowest, and checkpoints the mapping before it).
    pub failures: Vec<String>,
}

#[derive(Default)]
struct KnownShards {
    /// Parents of every shard listed.
    parents: HashMap<String, Vec<String>>,
    /// Shards marked finished in the control table.
    finished: HashSet<String>,
}

/// A [`Replicator`] driven by a Lambda event source mapping (see the module docs).
pub struct LambdaReplicator {
    replicator: Replicator,
    source: aws_sdk_kinesis::Client,
    shards: tokio::sync::Mutex<KnownShards>,
}

impl LambdaReplicator {
    /// `source`: a Kinesis client of the source Region (for `ListShards` only).
    pub fn new(replicator: Replicator, source: aws_sdk_kinesis::Client) -> Self {
        Self { replicator, source, shards: tokio::sync::Mutex::default() }
    }

    /// The replicator.
    pub fn replicator(&self) -> &Replicator {
        &self.replicator
    }

    /// Lists the source stream's shards and registers those the control table does not know
    /// (so the failover watermark covers shards the mapping has not invoked the function for).
    pub async fn sync_shards(&self) -> Result<()> {
        let listed = crate::reader::list_shards(&self.source, self.replicator.stream()).await?;
        self.replicator.register(&listed).await?;
        let mut known = self.shards.lock().await;
        for info in listed {
            known.parents.insert(info.shard_id.clone(), info.parents().map(str::to_owned).collect());
        }
        Ok(())
    }

    /// Reads the active-Region flag and lists and registers the shards ahead of the first
    /// invocation (both are repeated by it if they fail or the flag's TTL has passed).
    pub async fn warm_up(&self) -> Result<()> {
        let (flag, shards) = tokio::join!(self.replicator.prefetch_active_region(), self.sync_shards());
        flag.and(shards)
    }

    /// Replicates the records of one invocation (in the mapping's order).
    pub async fn handle(&self, records: &[SourceRecord]) -> LambdaBatch {
        if records.is_empty() {
            return LambdaBatch::default();
        }
        let first_of_each_shard = || {
            let mut seen = HashSet::new();
            records
                .iter()
                .filter(|r| seen.insert(r.shard_id.as_str()))
                .map(|r| r.sequence_number.clone())
                .collect::<Vec<_>>()
        };
        let unknown = {
            let known = self.shards.lock().await;
            records.iter().any(|r| !known.parents.contains_key(&r.shard_id))
        };
        // Listing and registering the shards runs beside the replication (both write the
        // shard's item conditionally, in either order); a cold start pays one round trip less.
        let (synced, replicated) = if unknown {
            let (s, r) = tokio::join!(self.sync_shards(), self.replicator.replicate_records(records, &[]));
            (Some(s), r)
        } else {
            (None, self.replicator.replicate_records(records, &[]).await)
        };
        if let Some(Err(e)) = synced {
            // Retried with the next batch; until then a failover counts only the shards known.
            tracing::warn!(error = %e, "listing or registering the source shards failed (retried with the next batch)");
        }
        match replicated {
            Err(e) => LambdaBatch { outcome: None, error: Some(e), failures: first_of_each_shard() },
            Ok(outcome) => {
                self.finish_parents(&outcome).await;
                let failures = outcome.failed.iter().map(|(_, seq)| seq.clone()).collect();
                LambdaBatch { outcome: Some(outcome), error: None, failures }
            }
        }
    }

    /// The mapping reads a child only after its parents are read to their end: once a child is
    /// checkpointed, its parents are finished (and leave the failover watermark).
    async fn finish_parents(&self, outcome: &BatchOutcome) {
        let mut known = self.shards.lock().await;
        let moved: Vec<String> = outcome
            .checkpoints
            .iter()
            .filter(|(_, w)| matches!(w, CheckpointWrite::Written | CheckpointWrite::Stale { .. }))
            .map(|(cp, _)| cp.shard_id.clone())
            .collect();
        for child in moved {
            let parents = known.parents.get(&child).cloned().unwrap_or_default();
            for parent in parents {
                if known.finished.contains(&parent) {
                    continue;
                }
                let r = &self.replicator;
                match r.checkpoint_table().finish_shard(r.stream(), r.source_region(), &parent).await {
                    Ok(()) => {
                        known.finished.insert(parent);
                    }
                    // The watermark of the parent stays: a failover replays more, loses nothing.
                    Err(e) => {
                        tracing::warn!(shard = %parent, error = %e, "marking a parent shard finished failed (retried with the next batch)")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_arns() {
        let arn = StreamArn::parse("arn:aws:kinesis:us-east-1:111122223333:stream/orders").unwrap();
        assert_eq!(
            (arn.region.as_str(), arn.stream.as_str(), arn.account.as_str()),
            ("us-east-1", "orders", "111122223333")
        );
        let efo =
            StreamArn::parse("arn:aws:kinesis:eu-west-1:111122223333:stream/orders/consumer/rep:1700000000").unwrap();
        assert_eq!(efo.stream, "orders");
        for bad in [
            "",
            "orders",
            "arn:aws:sqs:us-east-1:111122223333:orders",
            "arn:aws:kinesis:us-east-1:111122223333:table/orders",
            "arn:aws:kinesis::111122223333:stream/orders",
            "arn:aws:kinesis:us-east-1:111122223333:stream/",
        ] {
            assert!(matches!(StreamArn::parse(bad), Err(KinesisError::InvalidEvent(_))), "{bad}");
        }
    }
}
