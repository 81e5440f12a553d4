//! Polling reader over every shard of a stream (`ListShards`, `GetShardIterator`, `GetRecords`),
//! shared by the replicator's polling loop and consumers.

use std::collections::HashMap;

use aws_sdk_kinesis::types::ShardIteratorType;

use crate::{KinesisError, Result, SourceRecord};

/// Where a [`StreamReader`] starts in each shard.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StartPosition {
    /// The oldest record kept.
    TrimHorizon,
    /// Only records put after opening.
    Latest,
    /// After the given sequence number per shard (e.g. replication checkpoints); shards not listed
    /// start at the trim horizon.
    After(HashMap<String, String>),
}

struct ShardCursor {
    shard_id: String,
    iterator: Option<String>,
    /// Where to get a new iterator if this one expires: at or after a sequence number, or the
    /// stream's start position.
    resume: Resume,
}

#[derive(Clone)]
enum Resume {
    Start(ShardIteratorType),
    After(String),
    At(String),
}

impl Resume {
    fn parts(&self) -> (ShardIteratorType, Option<&str>) {
        match self {
            Self::Start(kind) => (kind.clone(), None),
            Self::After(seq) => (ShardIteratorType::AfterSequenceNumber, Some(seq)),
            Self::At(seq) => (ShardIteratorType::AtSequenceNumber, Some(seq)),
        }
    }
}

/// Reads all shards of one stream, one `GetRecords` per shard per [`Self::poll`].
pub struct StreamReader {
    client: aws_sdk_kinesis::Client,
    stream: String,
    shards: Vec<ShardCursor>,
    limit: i32,
    millis_behind: HashMap<String, i64>,
}

impl StreamReader {
    /// Lists the stream's shards and positions an iterator in each.
    pub async fn open(client: aws_sdk_kinesis::Client, stream: &str, start: StartPosition) -> Result<Self> {
        let mut shard_ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let req = match next.take() {
                Some(token) => client.list_shards().next_token(token),
                None => client.list_shards().stream_name(stream),
            };
            let out = req.send().await.map_err(|e| KinesisError::kinesis("ListShards", stream, &e))?;
            shard_ids.extend(out.shards().iter().map(|s| s.shard_id().to_owned()));
            match out.next_token() {
                Some(t) => next = Some(t.to_owned()),
                None => break,
            }
        }
        let mut reader =
            Self { client, stream: stream.to_owned(), shards: Vec::new(), limit: 1000, millis_behind: HashMap::new() };
        for shard_id in shard_ids {
            let resume = match &start {
                StartPosition::TrimHorizon => Resume::Start(ShardIteratorType::TrimHorizon),
                StartPosition::Latest => Resume::Start(ShardIteratorType::Latest),
                StartPosition::After(map) => match map.get(&shard_id) {
                    Some(seq) => Resume::After(seq.clone()),
                    None => Resume::Start(ShardIteratorType::TrimHorizon),
                },
            };
            let (kind, seq) = resume.parts();
            let iterator = reader.iterator(&shard_id, kind, seq).await?;
            reader.shards.push(ShardCursor { shard_id, iterator, resume });
        }
        Ok(reader)
    }

    /// Records per `GetRecords` call (1..=10,000; default 1,000).
    pub fn with_limit(mut self, limit: i32) -> Self {
        self.limit = limit.clamp(1, 10_000);
        self
    }

    /// The shard ids being read.
    pub fn shard_ids(&self) -> impl Iterator<Item = &str> {
        self.shards.iter().map(|s| s.shard_id.as_str())
    }

    /// The largest `MillisBehindLatest` reported by the last poll of each shard.
    pub fn millis_behind_latest(&self) -> i64 {
        self.millis_behind.values().copied().max().unwrap_or(0)
    }

    async fn iterator(&self, shard_id: &str, kind: ShardIteratorType, seq: Option<&str>) -> Result<Option<String>> {
        let out = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard_id)
            .shard_iterator_type(kind)
            .set_starting_sequence_number(seq.map(str::to_owned))
            .send()
            .await
            .map_err(|e| KinesisError::kinesis("GetShardIterator", &self.stream, &e))?;
        Ok(out.shard_iterator().map(str::to_owned))
    }

    /// One `GetRecords` per open shard; returns the records in shard order, each shard's in
    /// sequence order. An expired iterator is renewed after the last record read.
    pub async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let mut records = Vec::new();
        for i in 0..self.shards.len() {
            let Some(iterator) = self.shards[i].iterator.clone() else { continue };
            let out = match self.client.get_records().shard_iterator(iterator).limit(self.limit).send().await {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_expired_iterator_exception()) => {
                    let (shard_id, resume) = (self.shards[i].shard_id.clone(), self.shards[i].resume.clone());
                    let (kind, seq) = resume.parts();
                    self.shards[i].iterator = self.iterator(&shard_id, kind, seq).await?;
                    continue;
                }
                Err(e) => return Err(KinesisError::kinesis("GetRecords", &self.stream, &e)),
            };
            let shard = &mut self.shards[i];
            if let Some(ms) = out.millis_behind_latest() {
                self.millis_behind.insert(shard.shard_id.clone(), ms);
            }
            for r in out.records() {
                shard.resume = Resume::After(r.sequence_number().to_owned());
                records.push(SourceRecord {
                    shard_id: shard.shard_id.clone(),
                    sequence_number: r.sequence_number().to_owned(),
                    partition_key: r.partition_key().unwrap_or_default().to_owned(),
                    data: bytes::Bytes::copy_from_slice(r.data().as_ref()),
                    arrival: r.approximate_arrival_timestamp().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                });
            }
            shard.iterator = out.next_shard_iterator().map(str::to_owned);
        }
        Ok(records)
    }

    /// Rewinds every shard named in `positions` to the first sequence number listed for it (the
    /// positions of one shard come in order, so that is the earliest).
    pub async fn rewind_to_first(&mut self, positions: &[(&str, &str)]) -> Result<()> {
        let mut rewound: Vec<&str> = Vec::new();
        for &(shard_id, sequence_number) in positions {
            if !rewound.contains(&shard_id) {
                self.rewind(shard_id, sequence_number).await?;
                rewound.push(shard_id);
            }
        }
        Ok(())
    }

    /// Re-reads `shard_id` from `sequence_number` (inclusive), e.g. after a partial failure.
    pub async fn rewind(&mut self, shard_id: &str, sequence_number: &str) -> Result<()> {
        let iterator = self.iterator(shard_id, ShardIteratorType::AtSequenceNumber, Some(sequence_number)).await?;
        let shard = self
            .shards
            .iter_mut()
            .find(|s| s.shard_id == shard_id)
            .ok_or_else(|| KinesisError::InvalidConfig(format!("shard {shard_id} is not read by this reader")))?;
        shard.iterator = iterator;
        shard.resume = Resume::At(sequence_number.to_owned());
        Ok(())
    }
}
