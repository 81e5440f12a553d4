//! The Kinesis layer against the local AWS endpoint (moto, started by `scripts/test`) in two
//! Regions, through the real `aws-sdk-kinesis`, `aws-sdk-dynamodb`, `aws-sdk-sqs` and
//! `aws-sdk-kms` clients: each case of "replication never loses a record" on its own.
//!
//! Every test uses its own stream and table names; tests that inject faults use Regions no other
//! test uses (the endpoint and its fault rules are shared by the tests running at once).
#![cfg(feature = "aws")]

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use esdk::ErrorKind;
use esdk_kinesis::record::{RecordCodec, RecordHeader};
use esdk_kinesis::{
    lambda::LambdaReplicator, Advance, Checkpoint, CheckpointWrite, ControlTable, DeadLetterQueue, KinesisError,
    Producer, PutConfig, SourceRecord, StartPosition, StreamReader,
};
use esdk_testkit::aws::Endpoint;
use esdk_testkit::pipeline::{
    change, changes, consume_until, pipeline, produce_all, replicate_all, replicator, test_reader, unique, Delivered,
    Side, Verdict,
};

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

fn payloads(records: &[SourceRecord]) -> Vec<(String, Vec<u8>)> {
    let mut d: Vec<(String, Vec<u8>)> = records.iter().map(|r| (r.partition_key.clone(), r.data.to_vec())).collect();
    d.sort();
    d
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn end_to_end_byte_identical_with_checkpoints_watermarks_and_few_kms_calls() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("e2e"), unique("ctl"));
    let (a, b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 2).await;
    let changes = changes(300, 60);
    produce_all(&a.producer(&stream), &changes, deadline()).await;
    let rep = replicator(&a, &b, &stream).allowed_keys([a.key_arn.as_str()]).unwrap().build().unwrap();
    assert_eq!(replicate_all(&rep, &a).await, 300);
    assert_eq!(rep.metrics().records_replicated.load(Ordering::Relaxed), 300);

    let (in_a, in_b) = (a.read_all(&stream).await, b.read_all(&stream).await);
    assert_eq!(payloads(&in_a), payloads(&in_b), "byte-for-byte copies");
    for side in [&a, &b] {
        let mut delivered = Delivered::default();
        consume_until(&side.consumer(&stream, Some("g")), side.kinesis.clone(), &mut delivered, 300, deadline()).await;
        assert_eq!(delivered.check(&changes), Verdict::CLEAN, "in {}", side.region);
    }
    // The changes span well under a minute: a handful of 10 s commit windows, one data key each.
    let (ka, kb) = (a.kms.counts(), b.kms.counts());
    assert!(ka.generate_data_key <= 8 && ka.decrypt <= 8 && kb.decrypt <= 8, "{ka:?} {kb:?}");
    assert_eq!(kb.generate_data_key, 0);

    // Checkpoints in B's table, per source shard, at the last record of each, with a watermark
    // no later than any commit time of that shard.
    let shards = b.control.shards(&stream, &a.region).await.unwrap();
    assert_eq!(shards.len(), 2, "{shards:?}");
    for p in &shards {
        let last = in_a.iter().filter(|r| r.shard_id == p.shard_id).map(|r| r.sequence_number.clone()).last();
        assert_eq!(p.sequence_number, last);
        let w = p.watermark.expect("a watermark");
        assert!(w <= SystemTime::now());
    }
    let resume = b.control.resume_point(&stream, &a.region, Duration::from_secs(1)).await.unwrap();
    let from = resume.from.expect("every shard has a watermark");
    assert!(from <= changes.iter().map(|c| c.commit_time).max().unwrap());
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn checkpoints_only_move_forward_and_the_flag_is_fenced() {
    let env = Endpoint::from_env();
    let control = ControlTable::new(env.dynamodb("eu-north-1"), &unique("ctl"));
    assert!(control.create_if_missing().await.unwrap(), "created");
    assert!(!control.create_if_missing().await.unwrap(), "already there");
    let cp = |shard: &str, seq: &str, secs: u64| {
        Checkpoint::new("s", "us-east-1", shard, seq, Some(UNIX_EPOCH + Duration::from_secs(secs)))
    };
    let big = "49590338271490256608559692538361571095921575989136588898";
    let bigger = "49590338271490256608559692540925702759324208523137515618";
    assert_eq!(control.write_checkpoint(&cp("shard-0", bigger, 200)).await.unwrap(), CheckpointWrite::Written);
    match control.write_checkpoint(&cp("shard-0", big, 100)).await.unwrap() {
        CheckpointWrite::Stale { current } => assert_eq!(current.as_deref(), Some(bigger)),
        other => panic!("moved a checkpoint backwards: {other:?}"),
    }
    // A shorter number is smaller although it sorts after as text.
    assert!(matches!(control.write_checkpoint(&cp("shard-0", "9", 1)).await.unwrap(), CheckpointWrite::Stale { .. }));
    assert_eq!(control.write_checkpoint(&cp("shard-0", bigger, 200)).await.unwrap(), CheckpointWrite::Written);
    // Finished is final.
    assert_eq!(control.write_checkpoint(&cp("shard-1", "7", 50).finished()).await.unwrap(), CheckpointWrite::Written);
    assert!(matches!(control.write_checkpoint(&cp("shard-1", "8", 60)).await.unwrap(), CheckpointWrite::Stale { .. }));
    assert!(control.write_checkpoint(&cp("shard-0", "12ab", 1)).await.is_err());
    // Finished shards do not hold the resume point back; a registered shard without a watermark
    // makes it "from the beginning".
    let r = control.resume_point("s", "us-east-1", Duration::from_secs(10)).await.unwrap();
    assert_eq!(r.from, Some(UNIX_EPOCH + Duration::from_secs(190)));
    control.register_shard("s", "us-east-1", "shard-2", &["shard-0".into()], None).await.unwrap();
    assert_eq!(control.resume_point("s", "us-east-1", Duration::ZERO).await.unwrap().from, None);
    assert!(control.shards("s", "us-west-2").await.unwrap().is_empty(), "keyed by source Region");

    // The flag: missing is an error that says what to do and can be retried, never "inactive".
    let err = control.active_region("s").await.unwrap_err();
    assert!(matches!(err, KinesisError::FlagMissing { .. }) && err.is_retryable(), "{err}");
    assert!(err.to_string().contains("esdk kinesis init"), "{err}");
    let (flag, created) = control.init_active_region("s", "us-east-1").await.unwrap();
    assert!(created && flag.epoch == 1);
    assert!(!control.init_active_region("s", "us-west-2").await.unwrap().1, "init never overwrites");
    // Two operators flip from epoch 1 at once: one wins, the other learns the winner's flag.
    let (first, second) =
        tokio::join!(control.set_active_region("s", "us-west-2", 1), control.set_active_region("s", "eu-west-1", 1));
    let (won, lost) = match (first, second) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("both or neither won: {other:?}"),
    };
    assert_eq!(won.epoch, 2);
    match lost {
        KinesisError::FlagConflict { expected: Some(1), current, .. } => assert_eq!(current, won),
        other => panic!("{other}"),
    }
    assert_eq!(control.active_region("s").await.unwrap(), won);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn a_missing_or_unreadable_flag_fails_the_batch_and_skips_nothing() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("eu-central-1", "sa-east-1");
    let (stream, table) = (unique("flag"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let changes = changes(50, 50);
    produce_all(&a.producer(&stream), &changes, deadline()).await;
    // A replicator whose checkpoint table has no flag for the stream (e.g. before `init`).
    let empty = ControlTable::new(env.dynamodb(rb), &unique("ctl-empty"));
    empty.create_if_missing().await.unwrap();
    let rep = replicator(&a, &b, &stream).checkpoint_table(empty.clone()).build().unwrap();
    let mut reader = rep.open_source(a.kinesis.clone()).await.unwrap();
    let batch = reader.poll().await;
    assert_eq!(batch.records.len(), 50);
    let err = rep.replicate(&batch).await.unwrap_err();
    assert!(matches!(err, KinesisError::FlagMissing { .. }) && err.is_retryable(), "{err}");
    assert!(empty.shards(&stream, ra).await.unwrap().is_empty(), "nothing checkpointed");
    assert!(b.read_all(&stream).await.is_empty(), "nothing forwarded");
    // The flag read fails beyond the SDK's retries: the same.
    let rep = replicator(&a, &b, &stream).build().unwrap();
    env.inject_fault_status("DynamoDB_20120810.GetItem", rb, 3, 500, "InternalServerError").await;
    let err = rep.replicate(&batch).await.unwrap_err();
    assert!(err.is_retryable() && err.to_string().contains("DynamoDB GetItem"), "{err}");
    // Once the flag is readable, the batch read again is replicated whole.
    assert_eq!(replicate_all(&rep, &a).await, 50);
    assert_eq!(payloads(&b.read_all(&stream).await), payloads(&a.read_all(&stream).await));
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn a_throttled_shard_in_a_poll_stays_put_while_the_others_advance() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("us-east-2", "ap-southeast-1");
    let (stream, table) = (unique("poll"), unique("ctl"));
    let (a, _b) = pipeline(&env, ra, rb, &stream, &table, 4).await;
    let changes = changes(400, 400);
    produce_all(&a.producer(&stream), &changes, deadline()).await;
    // 30% of GetRecords and GetShardIterator calls throttled: some shards of a poll fail while
    // others succeed. Read in small pages and commit everything returned.
    env.inject_probability("Kinesis_20131202.GetRecords", ra, 0.3, 7, 400, "ProvisionedThroughputExceededException")
        .await;
    env.inject_probability(
        "Kinesis_20131202.GetShardIterator",
        ra,
        0.3,
        8,
        400,
        "ProvisionedThroughputExceededException",
    )
    .await;
    let config = test_reader().limit(7);
    let mut reader =
        StreamReader::open_with(a.kinesis.clone(), &stream, StartPosition::TrimHorizon, config).await.unwrap();
    let mut read: Vec<SourceRecord> = Vec::new();
    let (mut partial_polls, mut failures) = (0, 0);
    let until = deadline();
    while read.len() < 400 {
        assert!(Instant::now() < until, "read {} of 400", read.len());
        let batch = reader.poll().await;
        failures += batch.errors.len();
        if !batch.errors.is_empty() && !batch.records.is_empty() {
            partial_polls += 1;
        }
        // Every failed call is retryable and names the operation.
        for (_, e) in &batch.errors {
            assert!(e.is_retryable(), "{e}");
        }
        reader.commit(&batch, |_| Advance::All);
        read.extend(batch.records);
    }
    env.clear_faults_in(ra).await;
    assert!(
        failures > 0 && partial_polls > 0,
        "faults landed inside polls: {failures} failures, {partial_polls} partial"
    );
    // Exactly once each, in sequence order per shard.
    assert_eq!(payloads(&read), payloads(&a.read_all(&stream).await));
    let mut by_shard: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in &read {
        by_shard.entry(&r.shard_id).or_default().push(&r.sequence_number);
    }
    for seqs in by_shard.values() {
        let mut sorted = seqs.clone();
        sorted.sort_by_key(|s| s.parse::<u128>().unwrap());
        assert_eq!(seqs, &sorted);
    }
    // A batch not committed is read again, from the same position.
    let mut reader =
        StreamReader::open_with(a.kinesis.clone(), &stream, StartPosition::TrimHorizon, test_reader().limit(5))
            .await
            .unwrap();
    let first = reader.poll().await;
    let again = reader.poll().await;
    assert!(!again.records.is_empty());
    for shard in again.records.iter().map(|r| &r.shard_id) {
        let of =
            |b: &esdk_kinesis::Batch| b.records.iter().filter(|r| &r.shard_id == shard).cloned().collect::<Vec<_>>();
        assert_eq!(payloads(&of(&first)), payloads(&of(&again)), "nothing moves without a commit");
    }
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn put_records_partial_failures_throttling_and_5xx_lose_nothing() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("eu-west-2", "us-west-1");
    let (stream, table) = (unique("faults"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let changes = changes(300, 30);
    // Whole requests throttled beyond the SDK's 3 attempts, 5xx, and 20% of single entries.
    env.inject_fault("Kinesis_20131202.PutRecords", ra, 4, "ProvisionedThroughputExceededException").await;
    env.inject_fault_status("Kinesis_20131202.PutRecords", ra, 4, 500, "InternalFailure").await;
    env.inject_entry_faults(ra, 0.2, 3).await;
    let report = a
        .producer(&stream)
        .put(changes.iter().map(|c| (c.key.as_str(), c.payload.as_slice(), Some(c.commit_time))))
        .await;
    env.clear_faults_in(ra).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.retried > 0, "the producer retried");
    assert_eq!(a.read_all(&stream).await.len(), 300, "no record lost, none doubled by the producer");

    // The destination fails entries and whole requests too while the replicator forwards.
    env.inject_entry_faults(rb, 0.2, 4).await;
    env.inject_fault_status("Kinesis_20131202.PutRecords", rb, 4, 503, "ServiceUnavailable").await;
    let rep = replicator(&a, &b, &stream).build().unwrap();
    assert_eq!(replicate_all(&rep, &a).await, 300);
    env.clear_faults_in(rb).await;
    let mut delivered = Delivered::default();
    consume_until(&b.consumer(&stream, Some("g")), b.kinesis.clone(), &mut delivered, 300, deadline()).await;
    assert_eq!(delivered.check(&changes), Verdict::CLEAN);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn put_records_keep_per_key_order_and_report_what_could_not_be_put() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-northeast-2", "ap-south-1");
    let (stream, table) = (unique("order"), unique("ctl"));
    let (a, _b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let changes = changes(60, 3);
    env.inject_fault("Kinesis_20131202.PutRecords", ra, 5, "ProvisionedThroughputExceededException").await;
    env.inject_entry_faults(ra, 0.3, 11).await;
    produce_all(&a.producer(&stream), &changes, deadline()).await;
    env.clear_faults_in(ra).await;
    let mut delivered = Delivered::default();
    consume_until(&a.consumer(&stream, Some("g")), a.kinesis.clone(), &mut delivered, 60, deadline()).await;
    assert_eq!(delivered.check(&changes), Verdict::CLEAN, "every key in order");

    // A permanent failure: every later record of that key is reported, not sent out of order.
    let codec = RecordCodec::builder(a.cmm(), &stream, ra).build().unwrap();
    let tight = Producer::new(a.kinesis.clone(), &stream, codec, a.control.clone())
        .with_put_config(PutConfig::default().max_attempts(1))
        .unwrap();
    env.inject_fault("Kinesis_20131202.PutRecords", ra, 3, "ThrottlingException").await;
    let report = tight.put([("k", &b"1"[..], None), ("k", &b"2"[..], None)]).await;
    assert_eq!(report.failed.len(), 2);
    assert!(report.failed[0].error.is_retryable(), "{}", report.failed[0].error);
    assert!(matches!(report.failed[1].error, KinesisError::NotSent(_)), "{}", report.failed[1].error);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn producers_refuse_to_write_in_a_region_that_is_not_active() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("inactive"), unique("ctl"));
    let (a, b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 1).await;
    let report = b.producer(&stream).put([("k", &b"x"[..], Some(SystemTime::now()))]).await;
    assert_eq!((report.put.len(), report.requests), (0, 0), "nothing sent from B while A is active");
    match &report.failed[0].error {
        KinesisError::RegionNotActive { region, active } => {
            assert_eq!((region.as_str(), active.region.as_str()), (b.region.as_str(), a.region.as_str()))
        }
        other => panic!("{other}"),
    }
    // Told otherwise, it writes (and the record is B's own: its replicator forwards it).
    let unchecked = Producer::danger_produce_while_inactive(b.kinesis.clone(), &stream, b.codec(&stream));
    assert!(unchecked.put([("k", &b"x"[..], Some(SystemTime::now()))]).await.failed.is_empty());
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn record_too_large_after_encryption_is_refused_before_sending() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("size"), unique("ctl"));
    let (a, _b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 1).await;
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
    assert!(err.to_string().contains("8 bytes counted beside the message"), "the partition key is named: {err}");
    // The predicted maximum fits exactly: Kinesis (which enforces 1 MiB including the key) takes it.
    let payload = vec![7u8; *max as usize];
    let report = producer.put([(key, &payload[..], None)]).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.put[0].record_len + key.len(), 1 << 20, "exactly at the limit");
    assert_eq!(producer.put([(key, &vec![7u8; *max as usize + 1][..], None)]).await.requests, 0);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn refused_records_go_to_the_dead_letter_queue_or_stop_the_shard() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-northeast-1", "me-central-1");
    let (stream, table) = (unique("dlq"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 1).await;
    let good = changes(5, 5);
    produce_all(&a.producer(&stream), &good[..2], deadline()).await;
    // A record under a key the replicator does not allow (a single-Region key in A).
    let stranger = Side {
        key_arn: env.create_key(ra).await,
        kms: esdk::keyring::kms::MeteredKmsClient::new(env.kms(ra)),
        control: a.control.clone(),
        kinesis: a.kinesis.clone(),
        region: a.region.clone(),
    };
    produce_all(&stranger.producer(&stream), &[change(99, 1, SystemTime::now(), Duration::ZERO)], deadline()).await;
    produce_all(&a.producer(&stream), &good[2..], deadline()).await;

    // Without a dead-letter queue: the shard's checkpoint stops before the refused record.
    let strict = replicator(&a, &b, &stream).allowed_keys([a.key_arn.as_str()]).unwrap().build().unwrap();
    let mut reader = strict.open_source(a.kinesis.clone()).await.unwrap();
    strict.register_new_shards(&mut reader).await.unwrap();
    let batch = reader.poll().await;
    assert_eq!(batch.records.len(), 6);
    let o = strict.replicate(&batch).await.unwrap();
    assert_eq!(o.replicated, 5, "the allowed records are forwarded");
    assert_eq!(o.refused.len(), 1);
    assert!(!o.refused[0].dead_lettered && o.refused[0].reason.contains(&stranger.key_arn), "{:?}", o.refused);
    assert!(matches!(&o.errors[0], KinesisError::Refused { .. }), "{:?}", o.errors);
    let refused_seq = o.refused[0].sequence_number.clone();
    assert_eq!(o.failed, vec![(batch.records[0].shard_id.clone(), refused_seq.clone())]);
    let cp = b.control.shard_progress(&stream, ra, &batch.records[0].shard_id).await.unwrap().unwrap();
    assert_eq!(cp.sequence_number.as_deref(), Some(batch.records[1].sequence_number.as_str()), "stops before it");

    // With one: the record goes there with its reason and position, and the shard moves on.
    let url = env.create_queue(rb, &unique("dlq")).await;
    let with_dlq = replicator(&a, &b, &stream)
        .allowed_keys([a.key_arn.as_str()])
        .unwrap()
        .dead_letter_queue(DeadLetterQueue::new(env.sqs(rb), &url))
        .build()
        .unwrap();
    assert_eq!(replicate_all(&with_dlq, &a).await, 3, "the records after it (the two before were done)");
    let letters = env.drain_queue(rb, &url).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let l = &letters[0];
    assert_eq!(l["sequence_number"], refused_seq.as_str());
    assert_eq!(l["stream"], stream.as_str());
    assert_eq!(l["source_region"], ra);
    assert!(l["reason"].as_str().unwrap().contains("not wrapped under an allow-listed key"), "{l}");
    assert!(l["data"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(with_dlq.metrics().records_dead_lettered.load(Ordering::Relaxed), 1);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn tampered_records_are_poison_and_foreign_keys_cost_no_kms_call() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("poison"), unique("ctl"));
    let (a, b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 1).await;
    produce_all(&a.producer(&stream), &changes(3, 3), deadline()).await;
    let mut in_a = a.read_all(&stream).await;
    let mut bad = in_a[1].data.to_vec();
    let n = bad.len();
    bad[n - 20] ^= 1;
    in_a[1].data = bad.into();
    let out = a.consumer(&stream, None).process(&in_a).await;
    assert_eq!((out.delivered.len(), out.poison.len(), out.transient.len()), (2, 1, 0));
    assert_eq!(out.poison[0].error.esdk().map(esdk::Error::kind), Some(ErrorKind::BodyAuthentication));
    assert_eq!(out.advance(&in_a[0].shard_id), Advance::All, "poison is moved past (and reported)");

    // Encrypted under a key of B that B's consumer does not list: refused without a KMS call.
    let other_key = env.create_key(&b.region).await;
    let other = Side {
        key_arn: other_key.clone(),
        kms: esdk::keyring::kms::MeteredKmsClient::new(env.kms(&b.region)),
        control: b.control.clone(),
        kinesis: b.kinesis.clone(),
        region: b.region.clone(),
    };
    let record = other.codec(&stream).encrypt("k", b"x", Some(SystemTime::now())).await.unwrap();
    let foreign = SourceRecord::new("shardId-000000000000", "1", "k", record.data.clone(), None);
    let before = b.kms.counts();
    let out = b.consumer(&stream, None).process(&[foreign]).await;
    assert_eq!(b.kms.counts(), before, "no KMS call for a key outside the allow-list");
    let e = &out.poison[0].error;
    assert_eq!(e.esdk().map(esdk::Error::kind), Some(ErrorKind::NoDecryptableDataKey));
    assert!(e.to_string().contains(&other_key) && e.to_string().contains(&b.key_arn), "{e}");

    // Header-only inspection of a record, without keys.
    let h = RecordHeader::parse(&in_a[0].data).unwrap();
    assert_eq!(h.stream(), Some(stream.as_str()));
    assert_eq!(h.origin_region(), Some("us-east-1"));
    assert_eq!(h.kms_key_ids().collect::<Vec<_>>(), vec![a.key_arn.as_str()]);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn the_watermark_stays_below_unreplicated_commit_times_out_of_order_and_forged() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("il-central-1", "ap-south-2");
    let (stream, table) = (unique("mark"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 1).await;
    let now = SystemTime::now();
    let at = |i: usize, secs_ago: u64| change(i, 100, now - Duration::from_secs(secs_ago), Duration::ZERO);
    // Replicated: commit times out of order, then one forged a year ahead.
    let mut first: Vec<_> = [300u64, 200, 280, 240].iter().enumerate().map(|(i, s)| at(i, *s)).collect();
    first.push(change(9, 100, now + Duration::from_secs(365 * 86_400), Duration::ZERO));
    produce_all(&a.producer(&stream), &first, deadline()).await;
    let rep = replicator(&a, &b, &stream).put_config(PutConfig::default().max_attempts(1)).unwrap().build().unwrap();
    let mut reader = rep.open_source(a.kinesis.clone()).await.unwrap();
    rep.register_new_shards(&mut reader).await.unwrap();
    let batch = reader.poll().await;
    let o = rep.replicate(&batch).await.unwrap();
    reader.commit(&batch, |s| o.advance(s));
    assert_eq!(o.replicated, 5);
    let resume = b.control.resume_point(&stream, ra, Duration::ZERO).await.unwrap().from.unwrap();
    assert!(resume <= now - Duration::from_secs(300), "the earliest replicated commit time (10 s windows) bounds it");
    assert!(resume < SystemTime::now(), "a forged commit time never puts it in the future");

    // Read but not replicated (the destination fails): out of order, older than anything seen.
    let pending: Vec<_> = [100u64, 500, 150].iter().enumerate().map(|(i, s)| at(20 + i, *s)).collect();
    produce_all(&a.producer(&stream), &pending, deadline()).await;
    env.inject_fault_status("Kinesis_20131202.PutRecords", rb, 3, 500, "InternalFailure").await;
    let batch = reader.poll().await;
    assert_eq!(batch.records.len(), 3);
    let o = rep.replicate(&batch).await.unwrap();
    assert_eq!((o.replicated, o.failed.len()), (0, 1));
    reader.commit(&batch, |s| o.advance(s));
    let resume = b.control.resume_point(&stream, ra, Duration::ZERO).await.unwrap().from.unwrap();
    assert!(resume <= now - Duration::from_secs(500), "every record read but not replicated is covered");
    // Once they are replicated, the watermark moves on.
    assert_eq!((o.checkpoints.len(), o.watermarks_only), (0, 1), "the watermark moved, the position did not");
    let batch = reader.poll().await;
    let o = rep.replicate(&batch).await.unwrap();
    assert_eq!(o.replicated, 3);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn split_and_merge_keep_per_key_order_and_children_wait_for_parents() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("eu-south-1", "ca-west-1");
    let (stream, table) = (unique("reshard"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let all = changes(600, 20);
    let kinesis = &a.kinesis;
    produce_all(&a.producer(&stream), &all[..200], deadline()).await;
    // Split shard 0, produce more; merge two open shards, produce the rest.
    let shards = kinesis.list_shards().stream_name(&stream).send().await.unwrap().shards().to_vec();
    let s0 = &shards[0];
    let range = s0.hash_key_range().unwrap();
    let mid =
        (range.starting_hash_key().parse::<u128>().unwrap() + range.ending_hash_key().parse::<u128>().unwrap()) / 2;
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(s0.shard_id())
        .new_starting_hash_key(mid.to_string())
        .send()
        .await
        .unwrap();
    produce_all(&a.producer(&stream), &all[200..400], deadline()).await;
    let open: Vec<_> = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap()
        .shards()
        .iter()
        .filter(|s| s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_none())
        .cloned()
        .collect();
    // The second child of the split and the original shard 1 are adjacent.
    let (x, y) = (&open[open.len() - 1], &open[0]);
    let (lo, hi) = if x.hash_key_range().unwrap().ending_hash_key().parse::<u128>().unwrap() + 1
        == y.hash_key_range().unwrap().starting_hash_key().parse::<u128>().unwrap()
    {
        (x, y)
    } else {
        (y, x)
    };
    kinesis
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(lo.shard_id())
        .adjacent_shard_to_merge(hi.shard_id())
        .send()
        .await
        .unwrap();
    produce_all(&a.producer(&stream), &all[400..], deadline()).await;

    let rep = replicator(&a, &b, &stream).build().unwrap();
    assert_eq!(replicate_all(&rep, &a).await, 600);
    // Closed shards are marked finished; every shard is registered.
    let progress = b.control.shards(&stream, ra).await.unwrap();
    assert_eq!(progress.len(), 5, "{progress:?}");
    assert_eq!(progress.iter().filter(|p| p.finished).count(), 3, "the split parent and both merge parents");
    let mut delivered = Delivered::default();
    consume_until(&b.consumer(&stream, Some("g")), b.kinesis.clone(), &mut delivered, 600, deadline()).await;
    assert_eq!(delivered.check(&all), Verdict::CLEAN, "per key in order across the split and the merge");
    let mut delivered_a = Delivered::default();
    consume_until(&a.consumer(&stream, Some("g")), a.kinesis.clone(), &mut delivered_a, 600, deadline()).await;
    assert_eq!(delivered_a.check(&all), Verdict::CLEAN, "the source stream read with parents first");
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn split_brain_records_reach_the_other_region_and_replicas_never_go_back() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-southeast-4", "mx-central-1");
    let (stream, table) = (unique("brain"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 1).await;
    let all = changes(40, 40);
    produce_all(&a.producer(&stream), &all[..20], deadline()).await;
    assert_eq!(replicate_all(&replicator(&a, &b, &stream).build().unwrap(), &a).await, 20);
    // A producer in B writes while A is still active (split brain).
    let rogue = Producer::danger_produce_while_inactive(b.kinesis.clone(), &stream, b.codec(&stream));
    produce_all(&rogue, &all[20..], deadline()).await;
    let back = replicator(&b, &a, &stream).build().unwrap();
    assert_eq!(replicate_all(&back, &b).await, 20, "B's own records are forwarded, the 20 replicas are not");
    assert_eq!(back.metrics().records_skipped_replicas.load(Ordering::Relaxed), 20);
    assert_eq!(back.metrics().records_forwarded_while_inactive.load(Ordering::Relaxed), 20);
    for side in [&a, &b] {
        assert_eq!(side.read_all(&stream).await.len(), 40, "each record once in {}", side.region);
        let mut delivered = Delivered::default();
        consume_until(&side.consumer(&stream, Some("g")), side.kinesis.clone(), &mut delivered, 40, deadline()).await;
        assert_eq!(delivered.check(&all), Verdict::CLEAN);
    }
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn consumers_redeliver_after_a_downstream_failure_and_not_after_a_restart() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("eu-west-3", "ap-east-2");
    let (stream, table) = (unique("twophase"), unique("ctl"));
    let (a, _b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let all = changes(100, 10);
    produce_all(&a.producer(&stream), &all, deadline()).await;
    let consumer = a.consumer(&stream, Some("app"));
    let mut reader = consumer.open(a.kinesis.clone()).await.unwrap();
    let (batch, first) = consumer.poll(&mut reader).await;
    assert!(!first.delivered.is_empty());
    // The application fails to handle them: no commit. The same records come again.
    let (batch2, again) = consumer.poll(&mut reader).await;
    assert_eq!(first.delivered.len(), again.delivered.len(), "redelivered after the downstream failure");
    drop(batch);
    consumer.commit(&mut reader, &batch2, &again).await.unwrap();
    let mut delivered = Delivered::default();
    delivered.absorb(&again);
    consume_until(&consumer, a.kinesis.clone(), &mut delivered, 100, deadline()).await;
    // A new process of the same group: resumes at the checkpoints, delivers nothing again.
    let restarted = a.consumer(&stream, Some("app"));
    let mut reader = restarted.open(a.kinesis.clone()).await.unwrap();
    for _ in 0..3 {
        let (batch, out) = restarted.poll(&mut reader).await;
        assert!(out.delivered.is_empty(), "{} redelivered after a restart", out.delivered.len());
        restarted.commit(&mut reader, &batch, &out).await.unwrap();
    }
    assert_eq!(delivered.check(&all), Verdict::CLEAN);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn replays_after_a_failover_are_recognised_by_cdc_identity() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-southeast-2", "ap-northeast-3");
    let (stream, table) = (unique("replay"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let all = changes(200, 20);
    produce_all(&a.producer(&stream), &all[..150], deadline()).await;
    let rep = replicator(&a, &b, &stream).build().unwrap();
    // Replicate the first 100, then A fails.
    let mut reader = rep.open_source(a.kinesis.clone()).await.unwrap();
    rep.register_new_shards(&mut reader).await.unwrap();
    let consumer_b = b.consumer(&stream, Some("app"));
    let mut delivered = Delivered::default();
    let mut forwarded = 0;
    while forwarded < 100 {
        let batch = reader.poll().await;
        let o = rep.replicate(&batch).await.unwrap();
        reader.commit(&batch, |s| o.advance(s));
        forwarded += o.replicated;
    }
    consume_until(&consumer_b, b.kinesis.clone(), &mut delivered, forwarded, deadline()).await;
    env.inject_fault_status("*", ra, 1_000_000, 503, "ServiceUnavailable").await;

    // Failover (B's table; A is unreachable): B replays from the resume point, then goes on.
    let flag = b.control.active_region(&stream).await.unwrap();
    b.control.set_active_region(&stream, rb, flag.epoch).await.unwrap();
    let resume = b.control.resume_point(&stream, ra, Duration::from_secs(1)).await.unwrap();
    let replay: Vec<_> =
        all[..150].iter().filter(|c| resume.from.is_none_or(|t| c.commit_time >= t)).cloned().collect();
    let not_replicated = &all[forwarded..150];
    assert!(
        not_replicated.iter().all(|c| resume.from.is_none_or(|t| c.commit_time >= t)),
        "the resume point is no later than any record not replicated"
    );
    let mut from_b = replay.clone();
    from_b.extend(all[150..].iter().cloned());
    produce_all(&b.producer(&stream), &from_b, deadline()).await;
    consume_until(&consumer_b, b.kinesis.clone(), &mut delivered, 200, deadline()).await;
    assert_eq!(delivered.check(&all), Verdict::CLEAN, "replays recognised, nothing lost");
    assert!(delivered.duplicates_dropped > 0, "some replays were of delivered records");
    env.clear_faults_in(ra).await;
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn lambda_handler_returns_batch_item_failures_and_resumes() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("me-south-1", "af-south-1");
    let (stream, table) = (unique("lambda"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 1).await;
    produce_all(&a.producer(&stream), &changes(10, 10), deadline()).await;
    let in_a = a.read_all(&stream).await;
    let shard = in_a[0].shard_id.clone();
    let rep = replicator(&a, &b, &stream).put_config(PutConfig::default().max_attempts(1)).unwrap().build().unwrap();
    let lambda = LambdaReplicator::new(rep, a.kinesis.clone());
    // The destination fails for longer than the SDK and the replicator retry.
    env.inject_fault_status("Kinesis_20131202.PutRecords", rb, 3, 500, "InternalFailure").await;
    let batch = lambda.handle(&in_a).await;
    assert_eq!(batch.failures, [in_a[0].sequence_number.clone()], "the first failed record of the shard");
    let outcome = batch.outcome.unwrap();
    assert_eq!(outcome.replicated, 0);
    assert!(outcome.errors.iter().all(KinesisError::is_retryable), "{:?}", outcome.errors);
    let progress = b.control.shard_progress(&stream, ra, &shard).await.unwrap().unwrap();
    assert_eq!(progress.sequence_number, None, "no position checkpointed");
    assert!(progress.watermark.is_some(), "the records read and not replicated count for a failover");
    let batch = lambda.handle(&in_a).await;
    assert!(batch.failures.is_empty() && batch.error.is_none(), "{batch:?}");
    let cp = b.control.shard_progress(&stream, ra, &shard).await.unwrap().unwrap();
    assert_eq!(cp.sequence_number.as_deref(), Some(in_a.last().unwrap().sequence_number.as_str()));
    assert_eq!(b.read_all(&stream).await.len(), in_a.len());
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn lambda_mode_registers_every_shard_and_finishes_parents_after_a_split() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("us-east-1", "eu-central-2");
    let (stream, table) = (unique("lambda-split"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 1).await;
    produce_all(&a.producer(&stream), &changes(10, 10), deadline()).await;
    let parent = a.read_all(&stream).await;
    let parent_id = parent[0].shard_id.clone();
    a.split_first_shard(&stream).await;
    let lambda = LambdaReplicator::new(replicator(&a, &b, &stream).build().unwrap(), a.kinesis.clone());
    lambda.sync_shards().await.unwrap();
    let shards = b.control.shards(&stream, ra).await.unwrap();
    assert_eq!(shards.len(), 3, "the parent and both children are registered before any record: {shards:?}");
    assert!(lambda.handle(&parent).await.failures.is_empty());
    assert!(!b.control.shard_progress(&stream, ra, &parent_id).await.unwrap().unwrap().finished);
    produce_all(&a.producer(&stream), &changes(20, 10), deadline()).await;
    let children: Vec<_> = a.read_all(&stream).await.into_iter().filter(|r| r.shard_id != parent_id).collect();
    assert!(!children.is_empty());
    assert!(lambda.handle(&children).await.failures.is_empty());
    let progress = b.control.shard_progress(&stream, ra, &parent_id).await.unwrap().unwrap();
    assert!(
        progress.finished && progress.watermark.is_none(),
        "a checkpointed child finishes its parent: {progress:?}"
    );
    assert_eq!(b.read_all(&stream).await.len(), parent.len() + children.len());
}
