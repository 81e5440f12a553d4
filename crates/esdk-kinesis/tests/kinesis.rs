//! The Kinesis layer against the local AWS endpoint (moto, started by `scripts/test`) in two
//! Regions, through the real `aws-sdk-kinesis`, `aws-sdk-dynamodb` and `aws-sdk-kms` clients.
//!
//! Every test uses its own stream and table names; tests that inject faults use Regions no other
//! test (here or in the other test files, which share the endpoint and its counters) uses.
#![cfg(feature = "aws")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esdk::keyring::kms::{KmsClient, KmsMrkKeyring, MeteredKmsClient};
use esdk::{CachingCmm, Client, DefaultCmm, ErrorKind, LocalCache, MaterialsManager};
use esdk_kinesis::record::{CommitTimeInContext, RecordCodec, RecordHeader, EC_STREAM};
use esdk_kinesis::{
    lambda, Checkpoint, CheckpointWrite, ConsumeOutcome, Consumer, ControlTable, KinesisError, Producer, PutConfig,
    Replicator, SourceRecord, StartPosition, StreamReader,
};
use esdk_testkit::aws::Endpoint;

/// A name no other test (or earlier run against the same endpoint) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// One Region of a test pipeline.
struct Side {
    region: String,
    kinesis: aws_sdk_kinesis::Client,
    control: ControlTable,
    kms: Arc<MeteredKmsClient>,
    key_arn: String,
}

impl Side {
    fn cmm(&self) -> Arc<dyn MaterialsManager> {
        let kms: Arc<dyn KmsClient> = self.kms.clone();
        let keyring = KmsMrkKeyring::new(&self.key_arn, kms).unwrap();
        let cache = Arc::new(LocalCache::new(100).unwrap());
        Arc::new(CachingCmm::new(Arc::new(DefaultCmm::new(keyring)), cache, Duration::from_secs(300)).unwrap())
    }

    fn producer(&self, stream: &str) -> Producer {
        let codec = RecordCodec::builder(self.cmm(), stream, &self.region)
            .commit_time(CommitTimeInContext::Window(Duration::from_secs(10)))
            .build()
            .unwrap();
        Producer::new(self.kinesis.clone(), stream, codec)
            .with_put_config(PutConfig::default().backoff(Duration::from_millis(5), Duration::from_secs(5)))
            .unwrap()
    }

    fn consumer(&self, stream: &str) -> Consumer {
        Consumer::new(Client::new(), self.cmm()).expect_context([(EC_STREAM, stream)].into_iter().collect())
    }

    async fn read_all(&self, stream: &str) -> Vec<SourceRecord> {
        let mut reader = StreamReader::open(self.kinesis.clone(), stream, StartPosition::TrimHorizon).await.unwrap();
        let mut all = Vec::new();
        // moto returns everything in one call per shard; a second poll confirms the end.
        loop {
            let batch = reader.poll().await.unwrap();
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }
}

/// Two Regions with an MRK (primary in `a`), the stream in both, control tables in both with
/// `a` active.
async fn pipeline(env: &Endpoint, a: &str, b: &str, stream: &str, table: &str) -> (Side, Side) {
    let (arn_a, arn_b) = env.create_mrk(a, b).await;
    let mut sides = Vec::new();
    for (region, arn) in [(a, arn_a), (b, arn_b)] {
        env.create_stream(region, stream, 2).await;
        let control = ControlTable::new(env.dynamodb(region), table);
        control.create_if_missing().await.unwrap();
        control.set_active_region(a).await.unwrap();
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

fn replicator(from: &Side, to: &Side, stream: &str) -> Replicator {
    Replicator::new(&from.region, stream, to.kinesis.clone(), from.control.clone(), to.control.clone())
        .with_put_config(PutConfig::default().backoff(Duration::from_millis(5), Duration::from_secs(5)))
        .unwrap()
}

/// Runs the polling loop until a poll forwards nothing; returns records forwarded.
async fn replicate_all(rep: &Replicator, source: &Side) -> usize {
    let mut reader = rep.open_source(source.kinesis.clone()).await.unwrap();
    let mut total = 0;
    loop {
        let o = rep.poll_once(&mut reader).await.unwrap();
        assert!(o.failed.is_empty(), "{:?}", o.failed);
        if o.replicated == 0 && o.skipped_foreign == 0 && o.refused.is_empty() {
            return total;
        }
        total += o.replicated;
    }
}

fn cdc(i: usize) -> (String, Vec<u8>, SystemTime) {
    let t = UNIX_EPOCH + Duration::from_secs(1_658_174_400) + Duration::from_millis(250 * i as u64);
    (
        format!("{}", 12_340_000 + i),
        format!(r#"{{"Key": {}, "CommitTimestamp": "{}"}}"#, 12_340_000 + i, humantime::format_rfc3339_millis(t))
            .into_bytes(),
        t,
    )
}

async fn produce(p: &Producer, records: &[(String, Vec<u8>, SystemTime)]) -> esdk_kinesis::PutReport {
    p.put(records.iter().map(|(k, d, t)| (k.as_str(), d.as_slice(), Some(*t)))).await
}

fn plaintexts(out: &ConsumeOutcome) -> HashMap<String, Vec<u8>> {
    out.delivered.iter().map(|d| (d.partition_key.clone(), d.plaintext.to_vec())).collect()
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn end_to_end_replication_and_decryption_in_both_regions() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("e2e"), unique("ctl"));
    let (a, b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table).await;
    let records: Vec<_> = (0..300).map(cdc).collect();
    let report = produce(&a.producer(&stream), &records).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.put.len(), 300);

    let rep = replicator(&a, &b, &stream).with_allowed_keys([a.key_arn.as_str()]).unwrap();
    assert_eq!(replicate_all(&rep, &a).await, 300);
    assert_eq!(rep.metrics().records_replicated.load(Ordering::Relaxed), 300);

    // Byte-for-byte copies.
    let in_a = a.read_all(&stream).await;
    let in_b = b.read_all(&stream).await;
    let bytes = |v: &[SourceRecord]| {
        let mut d: Vec<(String, Vec<u8>)> = v.iter().map(|r| (r.partition_key.clone(), r.data.to_vec())).collect();
        d.sort();
        d
    };
    assert_eq!(bytes(&in_a), bytes(&in_b));

    let expected: HashMap<String, Vec<u8>> = records.iter().map(|(k, d, _)| (k.clone(), d.clone())).collect();
    for (side, recs) in [(&a, &in_a), (&b, &in_b)] {
        let out = side.consumer(&stream).process(recs).await;
        assert!(out.poison.is_empty() && out.transient.is_empty(), "{:?} {:?}", out.poison, out.transient);
        assert_eq!(plaintexts(&out), expected, "every record decrypts to its original in {}", side.region);
    }
    // 300 records over 75 s of commit time in 10 s windows: 8 windows, one data key each.
    let (ka, kb) = (a.kms.counts(), b.kms.counts());
    assert!(ka.generate_data_key <= 8, "{ka:?}");
    assert!(ka.decrypt <= 8 && kb.decrypt <= 8, "{ka:?} {kb:?}");
    assert_eq!(kb.generate_data_key, 0);

    // Checkpoints in B's table, per source shard, at the last record of each shard.
    let cps = b.control.checkpoints(&stream, &a.region).await.unwrap();
    assert_eq!(cps.len(), 2, "{cps:?}");
    for cp in &cps {
        let last = in_a.iter().filter(|r| r.shard_id == cp.shard_id).map(|r| r.sequence_number.clone()).last();
        assert_eq!(Some(cp.sequence_number.clone()), last);
        assert!(cp.commit_time.is_some());
    }
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn replicator_skips_when_its_region_is_not_active_and_never_forwards_replicas() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("loop"), unique("ctl"));
    let (a, b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table).await;
    let records: Vec<_> = (0..20).map(cdc).collect();
    assert!(produce(&a.producer(&stream), &records).await.failed.is_empty());
    assert_eq!(replicate_all(&replicator(&a, &b, &stream), &a).await, 20);

    // B→A while A is active: the batch is skipped as a whole.
    let back = replicator(&b, &a, &stream);
    let in_b = b.read_all(&stream).await;
    let o = back.replicate_batch(&in_b).await.unwrap();
    assert!(o.skipped_inactive && o.replicated == 0 && o.checkpoints.is_empty());
    // After a failover B→A runs, but records that came from A are replicas: never sent back.
    // (Both Regions' tables, as a DynamoDB global table would.)
    for side in [&a, &b] {
        side.control.set_active_region(&b.region).await.unwrap();
    }
    let o = back.replicate_batch(&in_b).await.unwrap();
    assert!(!o.skipped_inactive);
    assert_eq!((o.replicated, o.skipped_foreign), (0, 20));
    assert_eq!(a.read_all(&stream).await.len(), 20, "nothing was copied back to A");
    // And A→B now skips.
    let o = replicator(&a, &b, &stream).replicate_batch(&a.read_all(&stream).await).await.unwrap();
    assert!(o.skipped_inactive);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn checkpoints_are_conditional_and_only_move_forward() {
    let env = Endpoint::from_env();
    let control = ControlTable::new(env.dynamodb("us-east-1"), &unique("ctl"));
    control.create_if_missing().await.unwrap();
    control.create_if_missing().await.unwrap();
    let cp = |shard: &str, seq: &str, secs: u64| {
        Checkpoint::new("s", "us-east-1", shard, seq, Some(UNIX_EPOCH + Duration::from_secs(secs)))
    };
    let big = "49590338271490256608559692538361571095921575989136588898";
    let bigger = "49590338271490256608559692540925702759324208523137515618";
    assert_eq!(control.write_checkpoint(&cp("shard-0", bigger, 200)).await.unwrap(), CheckpointWrite::Written);
    match control.write_checkpoint(&cp("shard-0", big, 100)).await.unwrap() {
        CheckpointWrite::Stale { current } => assert_eq!(current.sequence_number, bigger),
        other => panic!("moved a checkpoint backwards: {other:?}"),
    }
    // A shorter number is smaller although it sorts after as text.
    assert!(matches!(control.write_checkpoint(&cp("shard-0", "9", 1)).await.unwrap(), CheckpointWrite::Stale { .. }));
    assert_eq!(
        control.write_checkpoint(&cp("shard-0", bigger, 200)).await.unwrap(),
        CheckpointWrite::Written,
        "idempotent"
    );
    assert_eq!(control.write_checkpoint(&cp("shard-1", "7", 50)).await.unwrap(), CheckpointWrite::Written);
    assert_eq!(control.checkpoint("s", "us-east-1", "shard-0").await.unwrap().unwrap().sequence_number, bigger);
    assert_eq!(control.resume_commit_time("s", "us-east-1").await.unwrap(), Some(UNIX_EPOCH + Duration::from_secs(50)));
    assert_eq!(control.checkpoints("s", "us-west-2").await.unwrap(), vec![], "keyed by source Region");
    assert!(control.write_checkpoint(&cp("shard-0", "12ab", 1)).await.is_err());
    assert_eq!(control.active_region().await.unwrap(), None);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn put_records_throttling_and_5xx_lose_nothing_and_consumers_drop_duplicates() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("eu-west-2", "us-west-1");
    let (stream, table) = (unique("faults"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table).await;
    let records: Vec<_> = (0..200).map(cdc).collect();
    // 4 throttles outlast the SDK's 3 attempts, so the producer's own retry takes over; then 5xx.
    env.inject_fault("Kinesis_20131202.PutRecords", ra, 4, "ProvisionedThroughputExceededException").await;
    env.inject_fault_status("Kinesis_20131202.PutRecords", ra, 4, 500, "InternalFailure").await;
    let report = produce(&a.producer(&stream), &records).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.retried > 0, "the producer retried: {report:?}");
    assert_eq!(a.read_all(&stream).await.len(), 200, "no record lost, none doubled by the producer");

    // The replicator forwards the same batch twice (as after a crash before its checkpoint),
    // with throttling and 5xx on the destination in between.
    let rep = replicator(&a, &b, &stream);
    let in_a = a.read_all(&stream).await;
    env.inject_fault("Kinesis_20131202.PutRecords", rb, 4, "ThrottlingException").await;
    assert_eq!(rep.replicate_batch(&in_a).await.unwrap().replicated, 200);
    env.inject_fault_status("Kinesis_20131202.PutRecords", rb, 4, 503, "ServiceUnavailable").await;
    assert_eq!(rep.replicate_batch(&in_a).await.unwrap().replicated, 200);
    let in_b = b.read_all(&stream).await;
    assert_eq!(in_b.len(), 400);
    let out = b.consumer(&stream).process(&in_b).await;
    assert_eq!(out.delivered.len(), 200);
    assert_eq!(out.duplicates.len(), 200, "duplicates counted and dropped");
    let expected: HashMap<String, Vec<u8>> = records.iter().map(|(k, d, _)| (k.clone(), d.clone())).collect();
    assert_eq!(plaintexts(&out), expected);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn put_records_keep_per_key_order_and_report_what_could_not_be_put() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-northeast-2", "ap-south-1");
    let (stream, table) = (unique("order"), unique("ctl"));
    let (a, _b) = pipeline(&env, ra, rb, &stream, &table).await;
    // Three keys, five records each, interleaved.
    let records: Vec<_> = (0..15)
        .map(|i| {
            let (_, d, t) = cdc(i);
            (format!("key-{}", i % 3), d, t)
        })
        .collect();
    env.inject_fault("Kinesis_20131202.PutRecords", ra, 5, "ProvisionedThroughputExceededException").await;
    let report = produce(&a.producer(&stream), &records).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let in_a = a.read_all(&stream).await;
    let out = a.consumer(&stream).process(&in_a).await;
    for key in ["key-0", "key-1", "key-2"] {
        // Within a shard, Kinesis order is sequence order: each key's payloads in input order.
        let got: Vec<Vec<u8>> =
            out.delivered.iter().filter(|d| d.partition_key == key).map(|d| d.plaintext.to_vec()).collect();
        let want: Vec<Vec<u8>> = records.iter().filter(|r| r.0 == key).map(|r| r.1.clone()).collect();
        assert_eq!(got, want, "order of {key}");
    }

    // A permanent failure: every later record of that key is reported, not sent out of order.
    let tight = Producer::new(a.kinesis.clone(), &stream, RecordCodec::builder(a.cmm(), &stream, ra).build().unwrap())
        .with_put_config(PutConfig::default().max_attempts(1))
        .unwrap();
    env.inject_fault("Kinesis_20131202.PutRecords", ra, 3, "ThrottlingException").await;
    let report = tight.put([("k", &b"1"[..], None), ("k", &b"2"[..], None)]).await;
    assert_eq!(report.failed.len(), 2);
    assert!(report.failed[0].error.is_retryable(), "{}", report.failed[0].error);
    assert!(
        report.failed[1].error.to_string().contains("earlier record with partition key"),
        "{}",
        report.failed[1].error
    );
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn record_too_large_after_encryption_is_refused_before_sending() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("size"), unique("ctl"));
    let (a, _b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table).await;
    let producer = a.producer(&stream);
    let key = "12349999";
    let report = producer.put([(key, &vec![7u8; 1 << 20][..], None)]).await;
    assert_eq!(report.requests, 0, "nothing sent");
    let err = &report.failed[0].error;
    let KinesisError::Esdk(esdk::Error::TooLargeAfterEncryption {
        predicted_len, limit, max_plaintext: Some(max), ..
    }) = err
    else {
        panic!("{err}")
    };
    assert_eq!(*limit, 1 << 20);
    assert!(*predicted_len > 1 << 20);
    assert!(err.to_string().contains("at most"), "{err}");
    assert!(err.to_string().contains("8 bytes counted beside the message"), "the partition key is named: {err}");
    // The predicted maximum fits exactly: Kinesis (which enforces 1 MiB including the key) takes it.
    let payload = vec![7u8; *max as usize];
    let report = producer.put([(key, &payload[..], None)]).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.put[0].record_len + key.len(), 1 << 20, "exactly at the limit");
    let one_more = vec![7u8; *max as usize + 1];
    assert_eq!(producer.put([(key, &one_more[..], None)]).await.requests, 0);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn tampered_record_is_poison_and_foreign_key_is_refused_without_a_kms_call() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("poison"), unique("ctl"));
    let (a, b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table).await;
    let records: Vec<_> = (0..3).map(cdc).collect();
    assert!(produce(&a.producer(&stream), &records).await.failed.is_empty());
    let mut in_a = a.read_all(&stream).await;
    // Tampered in transit: one byte of the body.
    let mut bad = in_a[1].data.to_vec();
    let n = bad.len();
    bad[n - 20] ^= 1;
    in_a[1].data = bad.into();

    // Encrypted under a single-Region key in B that the consumer does not list.
    let other_key = env.create_key(&b.region).await;
    let other = Side {
        key_arn: other_key.clone(),
        kms: MeteredKmsClient::new(env.kms(&b.region)),
        control: b.control.clone(),
        kinesis: b.kinesis.clone(),
        region: b.region.clone(),
    };
    assert!(produce(&other.producer(&stream), &[cdc(9)]).await.failed.is_empty());
    let foreign: Vec<SourceRecord> = b.read_all(&stream).await;
    assert_eq!(foreign.len(), 1);

    let consumer = b.consumer(&stream);
    let before = b.kms.counts();
    let out = consumer.process(&foreign).await;
    assert_eq!(b.kms.counts(), before, "no KMS call for a key outside the allow-list");
    assert_eq!(out.poison.len(), 1);
    let e = &out.poison[0].error;
    assert_eq!(e.kind(), ErrorKind::NoDecryptableDataKey);
    let msg = e.to_string();
    assert!(msg.contains(&other_key) && msg.contains(&b.key_arn), "names the EDK ARN and the allow-list: {msg}");

    let out = consumer.process(&in_a).await;
    assert_eq!(out.delivered.len(), 2);
    assert_eq!(out.poison.len(), 1);
    assert!(out.transient.is_empty());
    assert_eq!(out.poison[0].sequence_number, in_a[1].sequence_number);
    assert_eq!(out.poison[0].error.kind(), ErrorKind::BodyAuthentication);

    // The replicator's allow-list refuses the foreign record from its header alone.
    let mut mixed = foreign.clone();
    mixed.extend(in_a[..1].iter().cloned());
    b.control.set_active_region(&b.region).await.unwrap();
    let rep = replicator(&b, &a, &stream).with_allowed_keys([b.key_arn.as_str()]).unwrap();
    let o = rep.replicate_batch(&mixed).await.unwrap();
    assert_eq!(o.refused.len(), 1);
    assert!(o.refused[0].reason.contains(&other_key), "{}", o.refused[0].reason);
    assert_eq!(o.skipped_foreign, 1, "the A record in the batch is a replica for B→A");

    // Header-only inspection of a record, without keys.
    let h = RecordHeader::parse(&in_a[0].data).unwrap();
    assert_eq!(h.stream(), Some(stream.as_str()));
    assert_eq!(h.origin_region(), Some("us-east-1"));
    assert_eq!(h.kms_key_ids().collect::<Vec<_>>(), vec![a.key_arn.as_str()]);
    assert!(h.commit_time().unwrap().is_some());
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn region_a_outage_mid_batch_then_failover_loses_nothing() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-southeast-2", "ap-northeast-3");
    let (stream, table) = (unique("outage"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table).await;
    let records: Vec<_> = (0..160).map(cdc).collect();
    let rep_ab = replicator(&a, &b, &stream);

    // Batch 1 produced and replicated; batch 2 produced, half replicated, then Region A fails.
    assert!(produce(&a.producer(&stream), &records[..80]).await.failed.is_empty());
    assert_eq!(replicate_all(&rep_ab, &a).await, 80);
    assert!(produce(&a.producer(&stream), &records[80..120]).await.failed.is_empty());
    let mut reader = rep_ab.open_source(a.kinesis.clone()).await.unwrap();
    let batch2 = reader.poll().await.unwrap();
    assert_eq!(batch2.len(), 40);
    let o = rep_ab.replicate_batch(&batch2[..20]).await.unwrap();
    assert_eq!(o.replicated, 20);
    env.inject_fault_status("*", ra, 100_000, 503, "ServiceUnavailable").await;
    let err = rep_ab.poll_once(&mut reader).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    // Failover: B becomes active (A's table is unreachable; B's is what B's processes read).
    b.control.set_active_region(rb).await.unwrap();
    let resume = b.control.resume_commit_time(&stream, ra).await.unwrap().expect("checkpointed");
    let replay: Vec<_> = records[..120].iter().filter(|r| r.2 >= resume).cloned().collect();
    assert!(!replay.is_empty() && replay.len() < 120, "resumes inside the stream: {}", replay.len());
    let mut from_b = replay.clone();
    from_b.extend(records[120..].iter().cloned());
    let report = produce(&b.producer(&stream), &from_b).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // Consumers in B see every record ever produced, each decrypting to its original.
    let out_b = b.consumer(&stream).process(&b.read_all(&stream).await).await;
    assert!(out_b.poison.is_empty() && out_b.transient.is_empty());
    let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
    for d in &out_b.delivered {
        let prev = seen.insert(d.partition_key.clone(), d.plaintext.to_vec());
        assert!(prev.is_none_or(|p| p[..] == d.plaintext[..]), "a replayed record has the same content");
    }
    let expected: HashMap<String, Vec<u8>> = records.iter().map(|(k, d, _)| (k.clone(), d.clone())).collect();
    assert_eq!(seen, expected, "no record lost across the outage");

    // Region A recovers; B→A replicates B's records; consumers in A decrypt records encrypted in B.
    env.clear_faults_in(ra).await;
    a.control.set_active_region(rb).await.unwrap();
    let rep_ba = replicator(&b, &a, &stream);
    assert_eq!(replicate_all(&rep_ba, &b).await, from_b.len());
    let in_a = a.read_all(&stream).await;
    let out_a = a.consumer(&stream).process(&in_a).await;
    assert!(out_a.poison.is_empty(), "{:?}", out_a.poison);
    let from_b_keys: Vec<&String> = from_b.iter().map(|r| &r.0).collect();
    let b_origin =
        out_a.delivered.iter().filter(|d| d.encryption_context.get("kinesis-origin-region") == Some(rb)).count();
    assert_eq!(b_origin, from_b_keys.len());
    // A's consumer used only A's key ARN, so the B-encrypted records went to A's KMS.
    assert!(a.kms.counts().decrypt >= 1);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn lambda_handler_returns_batch_item_failures_and_resumes() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("me-south-1", "af-south-1");
    let (stream, table) = (unique("lambda"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table).await;
    let records: Vec<_> = (0..10).map(cdc).collect();
    assert!(produce(&a.producer(&stream), &records).await.failed.is_empty());
    let mut in_a = a.read_all(&stream).await;
    let shard = in_a[0].shard_id.clone();
    in_a.retain(|r| r.shard_id == shard); // an event carries one shard's records
    let event = serde_json::json!({ "Records": in_a.iter().map(|r| serde_json::json!({
        "kinesis": {
            "partitionKey": r.partition_key, "sequenceNumber": r.sequence_number,
            "data": base64_encode(&r.data), "approximateArrivalTimestamp": 1_658_174_400.5,
        },
        "eventID": format!("{}:{}", r.shard_id, r.sequence_number), "eventSource": "aws:kinesis",
    })).collect::<Vec<_>>() });

    let rep = Replicator::new(ra, &stream, b.kinesis.clone(), a.control.clone(), b.control.clone())
        .with_put_config(PutConfig::default().max_attempts(1))
        .unwrap();
    // The destination fails for longer than the SDK and the replicator retry.
    env.inject_fault_status("Kinesis_20131202.PutRecords", rb, 3, 500, "InternalFailure").await;
    let response = rep.handle_lambda_event(&event).await.unwrap();
    let failures = response["batchItemFailures"].as_array().unwrap();
    assert_eq!(failures.len(), in_a.len(), "{response}");
    assert_eq!(failures[0]["itemIdentifier"], in_a[0].sequence_number.as_str());
    assert!(b.control.checkpoint(&stream, ra, &shard).await.unwrap().is_none(), "nothing checkpointed");

    let response = rep.handle_lambda_event(&event).await.unwrap();
    assert_eq!(response, serde_json::json!({ "batchItemFailures": [] }));
    let cp = b.control.checkpoint(&stream, ra, &shard).await.unwrap().unwrap();
    assert_eq!(cp.sequence_number, in_a.last().unwrap().sequence_number);
    assert_eq!(b.read_all(&stream).await.len(), in_a.len());
    assert!(matches!(lambda::parse_event(&serde_json::json!({"Records": 1})), Err(KinesisError::InvalidEvent(_))));
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn polling_loop_rereads_a_batch_when_the_control_table_fails() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("eu-south-2", "ap-east-1");
    let (stream, table) = (unique("poll"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table).await;
    let records: Vec<_> = (0..30).map(cdc).collect();
    assert!(produce(&a.producer(&stream), &records).await.failed.is_empty());
    let rep = replicator(&a, &b, &stream);
    let mut reader = rep.open_source(a.kinesis.clone()).await.unwrap();
    // The active-Region read fails (beyond the SDK's retries): the step fails and nothing is lost.
    env.inject_fault_status("DynamoDB_20120810.GetItem", ra, 3, 500, "InternalServerError").await;
    let err = rep.poll_once(&mut reader).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("DynamoDB GetItem"), "{err}");
    let o = rep.poll_once(&mut reader).await.unwrap();
    assert_eq!(o.replicated, 30, "the failed batch is read again");
    assert_eq!(b.read_all(&stream).await.len(), 30);

    // The library's loop: stops once told to and caught up.
    assert!(produce(&a.producer(&stream), &(30..40).map(cdc).collect::<Vec<_>>()).await.failed.is_empty());
    let stop = std::sync::atomic::AtomicBool::new(true);
    let mut forwarded = 0;
    rep.run(a.kinesis.clone(), &stop, Duration::from_millis(10), |o| forwarded += o.replicated).await.unwrap();
    assert_eq!(forwarded, 10, "resumed after the checkpoints");
    assert_eq!(b.read_all(&stream).await.len(), 40);
}
