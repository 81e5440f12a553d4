//! A two-Region pipeline on the local endpoint for the Kinesis tests: MRK, streams, control
//! tables, producers, replicators and consumers with test pacing, synthetic CDC changes, and the
//! lost / duplicated / out-of-order check every scenario ends with.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use esdk::keyring::kms::{KmsClient, KmsMrkKeyring, MeteredKmsClient};
use esdk::{CachingCmm, Client, DefaultCmm, LocalCache, MaterialsManager};
use esdk_kinesis::record::{CommitTimeInContext, RecordCodec, EC_STREAM};
use esdk_kinesis::{
    Advance, AggregatingProducer, Aggregation, ConsumeOutcome, Consumer, ControlTable, Producer, PutConfig, PutReport,
    ReaderConfig, Replicator, ReplicatorBuilder, SourceRecord, StartPosition, StreamReader,
};

use crate::aws::Endpoint;

/// A name no other test (or earlier run against the same endpoint) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Fast pacing for tests (the local endpoint has no per-shard read limit).
pub fn test_reader() -> ReaderConfig {
    ReaderConfig::default()
        .intervals(Duration::from_millis(5), Duration::from_millis(20))
        .relist_interval(Duration::from_millis(500))
        .backoff(Duration::from_millis(10), Duration::from_millis(200))
}

/// Fast `PutRecords` retries for tests.
pub fn test_put() -> PutConfig {
    PutConfig::default().backoff(Duration::from_millis(5), Duration::from_millis(200))
}

/// One Region of a test pipeline.
pub struct Side {
    pub region: String,
    pub kinesis: aws_sdk_kinesis::Client,
    pub control: ControlTable,
    pub kms: Arc<MeteredKmsClient>,
    pub key_arn: String,
}

impl Side {
    /// A caching CMM over an MRK-aware strict keyring naming only this Region's key.
    pub fn cmm(&self) -> Arc<dyn MaterialsManager> {
        let kms: Arc<dyn KmsClient> = self.kms.clone();
        let keyring = KmsMrkKeyring::new(&self.key_arn, kms).unwrap();
        let cache = Arc::new(LocalCache::new(100).unwrap());
        Arc::new(CachingCmm::new(Arc::new(DefaultCmm::new(keyring)), cache, Duration::from_secs(300)).unwrap())
    }

    /// The record codec of this Region (10 s commit windows).
    pub fn codec(&self, stream: &str) -> RecordCodec {
        RecordCodec::builder(self.cmm(), stream, &self.region)
            .commit_time(CommitTimeInContext::Window(Duration::from_secs(10)))
            .build()
            .unwrap()
    }

    /// A producer checking this Region's flag.
    pub fn producer(&self, stream: &str) -> Producer {
        Producer::new(self.kinesis.clone(), stream, self.codec(stream), self.control.clone())
            .with_put_config(test_put())
            .unwrap()
            .with_flag_ttl(Duration::ZERO)
    }

    /// An aggregating producer checking this Region's flag (16 buckets).
    pub fn aggregating_producer(&self, stream: &str) -> AggregatingProducer {
        self.producer(stream).aggregating(Aggregation::default().buckets(16))
    }

    /// A consumer expecting the stream in the context; with a group, checkpointing in this
    /// Region's table.
    pub fn consumer(&self, stream: &str, group: Option<&str>) -> Consumer {
        let c = Consumer::new(Client::new(), self.cmm())
            .expect_context([(EC_STREAM, stream)].into_iter().collect())
            .with_reader_config(test_reader());
        match group {
            Some(g) => c.with_group(self.control.clone(), g, stream, &self.region),
            None => c,
        }
    }

    /// Every record in the stream now (read from the start, all shards, until a poll finds
    /// nothing new twice).
    /// Splits the first listed shard of `stream` in the middle of its hash key range and waits
    /// until the stream is active again.
    pub async fn split_first_shard(&self, stream: &str) {
        let shards = self.kinesis.list_shards().stream_name(stream).send().await.unwrap().shards().to_vec();
        let range = shards[0].hash_key_range().unwrap();
        let (lo, hi): (u128, u128) =
            (range.starting_hash_key().parse().unwrap(), range.ending_hash_key().parse().unwrap());
        self.kinesis
            .split_shard()
            .stream_name(stream)
            .shard_to_split(shards[0].shard_id())
            .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
            .send()
            .await
            .unwrap();
        for _ in 0..100 {
            let d = self.kinesis.describe_stream_summary().stream_name(stream).send().await.unwrap();
            if d.stream_description_summary().is_some_and(|s| s.stream_status().as_str() == "ACTIVE") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("stream {stream} not ACTIVE after a split");
    }

    pub async fn read_all(&self, stream: &str) -> Vec<SourceRecord> {
        let mut reader =
            StreamReader::open_with(self.kinesis.clone(), stream, StartPosition::TrimHorizon, test_reader())
                .await
                .unwrap();
        let mut all = Vec::new();
        let mut quiet = 0;
        while quiet < 3 {
            let batch = reader.poll().await;
            assert!(batch.errors.is_empty(), "{:?}", batch.errors);
            quiet = if batch.is_empty() { quiet + 1 } else { 0 };
            reader.commit(&batch, |_| Advance::All);
            all.extend(batch.records);
        }
        all
    }
}

/// Two Regions with an MRK (primary in `a`), the stream in both with `shards` shards, control
/// tables in both with `a` active.
pub async fn pipeline(env: &Endpoint, a: &str, b: &str, stream: &str, table: &str, shards: i32) -> (Side, Side) {
    let (arn_a, arn_b) = env.create_mrk(a, b).await;
    let mut sides = Vec::new();
    for (region, arn) in [(a, arn_a), (b, arn_b)] {
        env.create_stream(region, stream, shards).await;
        let control = ControlTable::new(env.dynamodb(region), table);
        control.create_if_missing().await.unwrap();
        control.init_active_region(stream, a).await.unwrap();
        sides.push(Side {
            region: region.to_owned(),
            kinesis: env.kinesis(region),
            control,
            kms: MeteredKmsClient::new(env.kms(region)),
            key_arn: arn,
        });
    }
    let b = sides.pop().unwrap();
    (sides.pop().unwrap(), b)
}

/// A replicator builder `from` → `to` with test pacing, checkpointing in `to`'s table.
pub fn replicator(from: &Side, to: &Side, stream: &str) -> ReplicatorBuilder {
    Replicator::builder(&from.region, stream)
        .destination(to.kinesis.clone(), None)
        .checkpoint_table(to.control.clone())
        .reader_config(test_reader())
        .put_config(test_put())
        .unwrap()
}

/// One synthetic CDC change.
#[derive(Clone, Debug)]
pub struct Change {
    pub key: String,
    pub version: usize,
    pub payload: Vec<u8>,
    pub commit_time: SystemTime,
}

/// Change `i` of a table of `keys` rows (row `i % keys`, version `i / keys`), committed
/// `spacing` after change `i - 1`, starting at `base`.
pub fn change(i: usize, keys: usize, base: SystemTime, spacing: Duration) -> Change {
    let (row, version) = (i % keys, i / keys);
    let commit_time = base + spacing * i as u32;
    let payload = format!(
        r#"{{"Key": {row}, "Version": {version}, "CommitTimestamp": "{}", "Amount": {}}}"#,
        humantime::format_rfc3339_millis(commit_time),
        (i * 7877) % 100_000
    )
    .into_bytes();
    Change { key: format!("row-{row}"), version, payload, commit_time }
}

/// `n` changes over `keys` rows, committed 1 ms apart, ending now.
pub fn changes(n: usize, keys: usize) -> Vec<Change> {
    let spacing = Duration::from_millis(1);
    let base = SystemTime::now() - spacing * n as u32;
    (0..n).map(|i| change(i, keys, base, spacing)).collect()
}

/// As [`changes`], each payload padded to `len` bytes (a CDC row of that size).
pub fn changes_of_size(n: usize, keys: usize, len: usize) -> Vec<Change> {
    let mut all = changes(n, keys);
    for c in &mut all {
        // Pad inside the JSON object so the payload stays JSON.
        let pad = len.saturating_sub(c.payload.len() + 12);
        c.payload.truncate(c.payload.len() - 1);
        c.payload.extend_from_slice(format!(r#", "Pad": "{}"}}"#, "x".repeat(pad)).as_bytes());
    }
    all
}

/// A producer of either mode.
pub trait Put: Sync {
    fn put_changes<'a>(&'a self, changes: &'a [&'a Change])
        -> impl std::future::Future<Output = PutReport> + Send + 'a;
}

impl Put for Producer {
    fn put_changes<'a>(
        &'a self,
        changes: &'a [&'a Change],
    ) -> impl std::future::Future<Output = PutReport> + Send + 'a {
        self.put(changes.iter().map(|c| (c.key.as_str(), c.payload.as_slice(), Some(c.commit_time))))
    }
}

impl Put for AggregatingProducer {
    fn put_changes<'a>(
        &'a self,
        changes: &'a [&'a Change],
    ) -> impl std::future::Future<Output = PutReport> + Send + 'a {
        self.put(changes.iter().map(|c| (c.key.as_str(), c.payload.as_slice(), Some(c.commit_time))))
    }
}

/// Puts every change (500 per call), retrying what failed (in order per key) until
/// `deadline`; returns the reports of every call.
pub async fn produce_all(producer: &impl Put, changes: &[Change], deadline: Instant) -> Vec<PutReport> {
    let mut reports = Vec::new();
    for chunk in changes.chunks(500) {
        let mut pending: Vec<&Change> = chunk.iter().collect();
        while !pending.is_empty() {
            let report = producer.put_changes(&pending).await;
            if let Some(f) = report.failed.iter().find(|f| !f.error.is_retryable()) {
                panic!("record {} cannot be put: {}", f.index, f.error);
            }
            pending = report.failed.iter().map(|f| pending[f.index]).collect();
            reports.push(report);
            assert!(Instant::now() < deadline, "{} changes still not put", pending.len());
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    reports
}

/// Replicates until a poll finds nothing left; returns the records forwarded.
pub async fn replicate_all(rep: &Replicator, source: &Side) -> usize {
    let mut reader = rep.open_source(source.kinesis.clone()).await.unwrap();
    let mut total = 0;
    let mut quiet = 0;
    while quiet < 3 {
        rep.register_new_shards(&mut reader).await.unwrap();
        let batch = reader.poll().await;
        let o = rep.replicate(&batch).await.unwrap();
        assert!(o.failed.is_empty(), "{:?} {:?}", o.failed, o.errors);
        reader.commit(&batch, |s| o.advance(s));
        quiet = if batch.is_empty() { quiet + 1 } else { 0 };
        total += o.replicated;
    }
    total
}

/// What a consumer delivered, per partition key in delivery order.
#[derive(Debug, Default)]
pub struct Delivered {
    by_key: HashMap<String, Vec<Vec<u8>>>,
    pub total: usize,
    pub duplicates_dropped: usize,
    pub poison: usize,
}

impl Delivered {
    pub fn absorb(&mut self, out: &ConsumeOutcome) {
        for d in &out.delivered {
            self.by_key.entry(d.partition_key.clone()).or_default().push(d.plaintext.to_vec());
        }
        self.total += out.delivered.len();
        self.duplicates_dropped += out.duplicates.len();
        self.poison += out.poison.len();
    }

    /// Distinct changes delivered.
    pub fn distinct(&self) -> usize {
        self.by_key.values().map(|v| v.iter().collect::<HashSet<_>>().len()).sum()
    }

    /// `(lost, delivered twice, out of order per key, unknown)` against `changes`.
    pub fn check(&self, changes: &[Change]) -> Verdict {
        let mut want: HashMap<&str, Vec<&Change>> = HashMap::new();
        for c in changes {
            want.entry(c.key.as_str()).or_default().push(c);
        }
        let mut v = Verdict::default();
        for (key, expected) in &want {
            let got = self.by_key.get(*key).map(Vec::as_slice).unwrap_or_default();
            let mut seen = HashSet::new();
            let mut last = None;
            for p in got {
                if !seen.insert(p.as_slice()) {
                    v.duplicated += 1;
                    continue;
                }
                match expected.iter().find(|c| c.payload == *p) {
                    Some(c) => {
                        if last.is_some_and(|l| c.version < l) {
                            v.out_of_order += 1;
                        }
                        last = Some(c.version);
                    }
                    None => v.unknown += 1,
                }
            }
            v.lost += expected.iter().filter(|c| !seen.contains(c.payload.as_slice())).count();
        }
        v.unknown += self.by_key.keys().filter(|k| !want.contains_key(k.as_str())).count();
        v
    }
}

/// The end-of-scenario counts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub lost: usize,
    pub duplicated: usize,
    pub out_of_order: usize,
    pub unknown: usize,
}

impl Verdict {
    /// Nothing lost, nothing twice, nothing out of order, nothing foreign.
    pub const CLEAN: Verdict = Verdict { lost: 0, duplicated: 0, out_of_order: 0, unknown: 0 };
}

/// Runs `consumer` (with a group) until it delivered `want` distinct changes or `deadline`.
pub async fn consume_until(
    consumer: &Consumer,
    kinesis: aws_sdk_kinesis::Client,
    delivered: &mut Delivered,
    want: usize,
    deadline: Instant,
) {
    let mut reader = loop {
        match consumer.open(kinesis.clone()).await {
            Ok(r) => break r,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("consumer open: {e}"),
        }
    };
    while delivered.distinct() < want {
        assert!(Instant::now() < deadline, "consumer delivered {} of {want} changes", delivered.distinct());
        let (batch, outcome) = consumer.poll(&mut reader).await;
        delivered.absorb(&outcome);
        if let Err(e) = consumer.commit(&mut reader, &batch, &outcome).await {
            assert!(e.is_retryable(), "{e}");
        }
    }
}
