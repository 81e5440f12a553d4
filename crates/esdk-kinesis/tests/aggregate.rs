//! Aggregated encrypted records on the local endpoint: bytes, requests and PUT units against one
//! record per message, a hot key, the size limits, consumers that stop inside an aggregate and
//! resume after a restart, streams that mix both kinds, malformed aggregates, and the official
//! Python ESDK plus the standard KPL deaggregator reading what was written.
#![cfg(feature = "aws")]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use esdk_kinesis::aggregate::AggregateBuilder;
use esdk_kinesis::record::RecordHeader;
use esdk_kinesis::{Aggregation, KinesisError, SourceRecord};
use esdk_testkit::aws::Endpoint;
use esdk_testkit::pipeline::{
    change, changes, changes_of_size, consume_until, pipeline, produce_all, replicate_all, replicator, unique, Change,
    Delivered, Put, Verdict,
};

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn aggregates_cut_bytes_requests_and_put_units_and_replicate_byte_for_byte() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("agg"), unique("ctl"));
    let (a, b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 2).await;
    // CDC rows of about 200 bytes, produced in one call (as a linger-sized batch would be).
    let all = changes_of_size(3000, 300, 200);
    let producer = a.aggregating_producer(&stream);
    let report = producer.put(all.iter().map(|c| (c.key.as_str(), c.payload.as_slice(), Some(c.commit_time)))).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed.first());
    let reports = [report];
    let sum = |f: fn(&esdk_kinesis::PutReport) -> u64| reports.iter().map(f).sum::<u64>();
    let (plain, bytes, units, kinesis) =
        (sum(|r| r.plaintext_bytes), sum(|r| r.record_bytes), sum(|r| r.put_payload_units), sum(|r| r.kinesis_records));
    assert_eq!(reports.iter().map(|r| r.put.len()).sum::<usize>(), 3000, "every user record accounted for");
    let ratio = bytes as f64 / plain as f64;
    println!("aggregated: {plain} plaintext bytes -> {bytes} record bytes ({ratio:.3}x), {kinesis} Kinesis records, {units} PUT units");
    assert!(ratio <= 1.15, "{ratio}");
    assert!(3000 / units >= 50, "one record per message costs 3000 units; aggregated {units}");

    let rep = replicator(&a, &b, &stream).build().unwrap();
    let mut reader = rep.open_source(a.kinesis.clone()).await.unwrap();
    let mut forwarded = 0;
    while forwarded < kinesis as usize {
        rep.register_new_shards(&mut reader).await.unwrap();
        let batch = reader.poll().await;
        for r in &batch.records {
            assert!(RecordHeader::parse(&r.data).unwrap().is_aggregate(), "the header says so");
        }
        let o = rep.replicate(&batch).await.unwrap();
        reader.commit(&batch, |s| o.advance(s));
        forwarded += o.replicated;
    }
    assert_eq!(rep.metrics().aggregates_replicated.load(Ordering::Relaxed), kinesis);
    let (in_a, in_b) = (a.read_all(&stream).await, b.read_all(&stream).await);
    let bytes_of = |v: &[SourceRecord]| {
        let mut d: Vec<(String, Vec<u8>)> = v.iter().map(|r| (r.partition_key.clone(), r.data.to_vec())).collect();
        d.sort();
        d
    };
    assert_eq!(bytes_of(&in_a), bytes_of(&in_b), "aggregates forwarded byte for byte");
    for side in [&a, &b] {
        let mut delivered = Delivered::default();
        consume_until(&side.consumer(&stream, Some("g")), side.kinesis.clone(), &mut delivered, 3000, deadline()).await;
        assert_eq!(delivered.check(&all), Verdict::CLEAN, "in {}", side.region);
    }
    let (ka, kb) = (a.kms.counts(), b.kms.counts());
    assert!(ka.generate_data_key <= 4 && kb.decrypt <= 4, "{ka:?} {kb:?}");
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn a_hot_key_takes_few_requests_and_oversized_records_are_refused_before_sending() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("hot"), unique("ctl"));
    let (a, _b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 2).await;
    let producer = a.aggregating_producer(&stream);
    let payload = vec![b'x'; 200];
    let records: Vec<(&str, &[u8], Option<SystemTime>)> =
        (0..10_000).map(|_| ("hot-key", payload.as_slice(), Some(SystemTime::now()))).collect();
    let report = producer.put(records).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed.first());
    assert_eq!(report.put.len(), 10_000);
    assert!(report.requests <= 20, "{} PutRecords requests for 10,000 records of one key", report.requests);
    // In order: sub-sequence numbers run through each aggregate, aggregates in sequence order.
    let positions: Vec<(u128, u64)> =
        report.put.iter().map(|p| (p.sequence_number.parse().unwrap(), p.sub_sequence.unwrap())).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "input order is stream order");

    // Too large to share: sent in an aggregate of its own; too large even alone: refused, with
    // the largest payload that fits, and nothing sent.
    let big = vec![7u8; 900 * 1024];
    let report = producer.put([("k1", &b"small"[..], None), ("k2", &big[..], None)]).await;
    assert!(report.failed.is_empty());
    assert_eq!(report.kinesis_records, 2);
    let huge = vec![7u8; 1 << 20];
    let report = producer.put([("k3", &huge[..], None)]).await;
    assert_eq!(report.requests, 0, "nothing sent");
    let err = &report.failed[0].error;
    let Some(esdk::Error::TooLargeAfterEncryption { max_plaintext: Some(max), limit, .. }) = err.esdk() else {
        panic!("{err}")
    };
    assert_eq!(*limit, 1 << 20);
    let fits = vec![7u8; *max as usize];
    let report = producer.put([("k3", &fits[..], None)]).await;
    assert!(report.failed.is_empty(), "the largest size named fits: {:?}", report.failed);
    let one_more = vec![7u8; *max as usize + 1];
    assert_eq!(producer.put([("k3", &one_more[..], None)]).await.requests, 0);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn consumers_stop_inside_aggregates_resume_after_a_restart_and_read_mixed_streams() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("inside"), unique("ctl"));
    let (a, _b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 1).await;
    let all = changes(500, 50);
    // Single records and aggregates in one stream.
    produce_all(&a.producer(&stream), &all[..100], deadline()).await;
    produce_all(&a.aggregating_producer(&stream), &all[100..400], deadline()).await;
    produce_all(&a.producer(&stream), &all[400..], deadline()).await;

    // A consumer that takes 37 user records per batch stops inside aggregates; each restart
    // (a new consumer of the group) resumes at the next user record.
    let mut delivered = Delivered::default();
    for _ in 0..100 {
        if delivered.distinct() >= 500 {
            break;
        }
        let consumer = a.consumer(&stream, Some("small")).with_max_batch_records(37);
        let mut reader = consumer.open(a.kinesis.clone()).await.unwrap();
        for _ in 0..2 {
            let (batch, out) = consumer.poll(&mut reader).await;
            assert!(out.delivered.len() <= 37);
            delivered.absorb(&out);
            consumer.commit(&mut reader, &batch, &out).await.unwrap();
        }
    }
    assert_eq!(delivered.check(&all), Verdict::CLEAN, "restarts inside aggregates lose and repeat nothing");
    let positions = a.control.consumer_positions("small", &stream, &a.region).await.unwrap();
    assert_eq!(positions.len(), 1);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn a_malformed_aggregate_from_a_producer_holding_the_key_is_poison() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("badagg"), unique("ctl"));
    let (a, _b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 1).await;
    let codec = a.codec(&stream);
    let mut garbage = esdk_kinesis::aggregate::MAGIC.to_vec();
    garbage.extend_from_slice(&[0x0a, 0x01, b'k', 0x1a, 0x04, 0x08, 0x07, 0x1a, 0x00]); // index 7 of a 1-entry table
    let digest = <md5::Md5 as md5::Digest>::digest(&garbage[4..]);
    garbage.extend_from_slice(&digest);
    let empty = AggregateBuilder::new().finish().to_vec();
    let bad_digest = {
        let mut b = AggregateBuilder::new();
        b.push("k", b"data");
        let mut v = b.finish().to_vec();
        let n = v.len();
        v[n - 1] ^= 1;
        v
    };
    let mut records = Vec::new();
    for (i, bytes) in [garbage, empty, bad_digest].iter().enumerate() {
        let r = codec.encrypt_aggregate("outer", bytes, Some(SystemTime::now())).await.unwrap();
        records.push(SourceRecord::new("shardId-000000000000", &(i + 1).to_string(), "outer", r.data, None));
    }
    let out = a.consumer(&stream, None).process(&records).await;
    assert_eq!((out.delivered.len(), out.poison.len()), (0, 3));
    let reasons: Vec<String> = out.poison.iter().map(|p| p.error.to_string()).collect();
    assert!(matches!(out.poison[0].error, KinesisError::Aggregate(_)), "{reasons:?}");
    assert!(reasons[0].contains("partition key #7"), "{reasons:?}");
    assert!(reasons[1].contains("no user record"), "{reasons:?}");
    assert!(reasons[2].contains("MD5"), "{reasons:?}");
}

#[test]
#[ignore = "needs the local AWS endpoint and the Python tools: run scripts/test"]
fn the_official_esdk_decrypts_and_the_kpl_deaggregator_splits_what_was_replicated() {
    let env = Endpoint::from_env();
    let py = esdk_testkit::interop_python();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (stream, table) = (unique("aggpy"), unique("ctl"));
    let (b, all) = rt.block_on(async {
        let (a, b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 2).await;
        let all: Vec<Change> = changes(400, 40);
        produce_all(&a.aggregating_producer(&stream), &all, deadline()).await;
        let rep = replicator(&a, &b, &stream).build().unwrap();
        let mut reader = rep.open_source(a.kinesis.clone()).await.unwrap();
        let mut quiet = 0;
        while quiet < 3 {
            let batch = reader.poll().await;
            let o = rep.replicate(&batch).await.unwrap();
            reader.commit(&batch, |s| o.advance(s));
            quiet = if batch.is_empty() { quiet + 1 } else { 0 };
        }
        (b, all)
    });
    // The destination stream's records, read by Python with only the destination's key ARN.
    let dir = tempfile::tempdir().unwrap();
    let records = rt.block_on(b.read_all(&stream));
    let mut lines = String::new();
    for r in &records {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(&r.data);
        lines.push_str(
            &serde_json::json!({"partitionKey": r.partition_key, "sequenceNumber": r.sequence_number, "data": data})
                .to_string(),
        );
        lines.push('\n');
    }
    let input = dir.path().join("records.jsonl");
    std::fs::write(&input, lines).unwrap();
    let out = esdk_testkit::run_python(&py, &["kinesis-deaggregate", input.to_str().unwrap(), &b.key_arn, &b.region]);
    let got: Vec<(String, Vec<u8>)> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            use base64::Engine as _;
            let data = base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().unwrap()).unwrap();
            (v["partitionKey"].as_str().unwrap().to_owned(), data)
        })
        .collect();
    let mut want: Vec<(String, Vec<u8>)> = all.iter().map(|c| (c.key.clone(), c.payload.clone())).collect();
    let mut got_sorted = got.clone();
    want.sort();
    got_sorted.sort();
    assert_eq!(got_sorted.len(), want.len(), "{:?}", &out[..out.len().min(500)]);
    assert_eq!(got_sorted, want, "the official ESDK and aws_kinesis_agg give back every CDC record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn records_sent_one_at_a_time_linger_into_shared_aggregates_in_order() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("linger"), unique("ctl"));
    let (a, _b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 2).await;
    let all = changes(200, 20);
    let sender = a.aggregating_producer(&stream).sender(Duration::from_millis(50), 1 << 20);
    // One task per key, each sending its key's changes one after another.
    let mut tasks = Vec::new();
    for k in 0..20 {
        let (sender, mine): (_, Vec<Change>) =
            (sender.clone(), all.iter().filter(|c| c.key == format!("row-{k}")).cloned().collect());
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for c in &mine {
                let r = sender.send(&c.key, &c.payload, Some(c.commit_time)).await.unwrap();
                positions.push((r.sequence_number.parse::<u128>().unwrap(), r.sub_sequence.unwrap()));
            }
            positions
        }));
    }
    let mut sequence_numbers = std::collections::HashSet::new();
    for t in tasks {
        let positions = t.await.unwrap();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "each key's records in order: {positions:?}");
        sequence_numbers.extend(positions.iter().map(|p| p.0));
    }
    // Ten rounds of twenty records over sixteen buckets: aggregates shared across tasks.
    assert!(sequence_numbers.len() < 100, "{} Kinesis records for 200 user records", sequence_numbers.len());
    drop(sender);
    let mut delivered = Delivered::default();
    consume_until(&a.consumer(&stream, Some("g")), a.kinesis.clone(), &mut delivered, 200, deadline()).await;
    assert_eq!(delivered.check(&all), Verdict::CLEAN);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn aggregates_hold_one_commit_window_and_reach_each_shard_in_commit_order() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("order"), unique("ctl"));
    let (a, _b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 2).await;
    // 2,000 changes of 8 rows 25 ms apart from a window start: five of the codec's 10 s windows
    // (400 changes each), in one put. Row 0 is hot in the third window (60 KB changes: its
    // aggregates fill up inside the window), and a key whose bucket no row shares appears only
    // in the last 100 changes (its bucket's first aggregate is of the last window).
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let base = UNIX_EPOCH + Duration::from_secs((now - 60) / 10 * 10);
    let producer = a.aggregating_producer(&stream);
    let rows: HashSet<&str> = (0..8).map(|r| producer.outer_key(&format!("row-{r}"))).collect();
    let late = (0..).map(|n| format!("late-{n}")).find(|k| !rows.contains(producer.outer_key(k))).unwrap();
    let mut all: Vec<Change> = (0..2000).map(|i| change(i, 8, base, Duration::from_millis(25))).collect();
    for (i, c) in all.iter_mut().enumerate() {
        if c.key == "row-0" && (800..1200).contains(&i) {
            c.payload.resize(60_000, b' ');
        }
        if c.key == "row-1" && i >= 1900 {
            c.key = late.clone();
        }
    }
    let report = producer.put(all.iter().map(|c| (c.key.as_str(), c.payload.as_slice(), Some(c.commit_time)))).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed.first());
    let window = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs() / 10;
    let mut windows: HashMap<(&str, &str), HashSet<u64>> = HashMap::new();
    for p in &report.put {
        let aggregate = (p.shard_id.as_str(), p.sequence_number.as_str());
        windows.entry(aggregate).or_default().insert(window(all[p.index].commit_time));
    }
    // One per row bucket per window, the late key's, and more for row 0's full ones.
    let expected = rows.len() * 5 + 1;
    assert!(windows.len() > expected, "{} aggregates, more than {expected}", windows.len());
    assert!(windows.values().all(|w| w.len() == 1), "an aggregate holds the records of one commit window");

    let mut by_shard: HashMap<String, Vec<(u128, SystemTime)>> = HashMap::new();
    for r in a.read_all(&stream).await {
        let t = RecordHeader::parse(&r.data).unwrap().commit_time().unwrap().unwrap();
        by_shard.entry(r.shard_id.clone()).or_default().push((r.sequence_number.parse().unwrap(), t));
    }
    assert_eq!(by_shard.values().map(Vec::len).sum::<usize>(), windows.len());
    for (shard, mut records) in by_shard {
        records.sort();
        assert!(
            records.windows(2).all(|w| w[0].1 <= w[1].1),
            "commit times in {shard}'s sequence order: {:?}",
            records.iter().map(|r| window(r.1)).collect::<Vec<_>>()
        );
    }
    let mut delivered = Delivered::default();
    consume_until(&a.consumer(&stream, Some("g")), a.kinesis.clone(), &mut delivered, 2000, deadline()).await;
    assert_eq!(delivered.check(&all), Verdict::CLEAN, "per key in order, none lost or twice");
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn an_aggregated_stream_resumes_from_the_same_commit_window_as_single_records() {
    let env = Endpoint::from_env();
    // 2,000 changes 15 ms apart from 5 s into a 10 s window, put 500 at a time: the last put
    // (7.5 s) straddles a window boundary and the last record lies 5 s past it.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let base = UNIX_EPOCH + Duration::from_secs((now - 60) / 10 * 10 + 5);
    let all: Vec<Change> = (0..2000).map(|i| change(i, 300, base, Duration::from_millis(15))).collect();
    let last = all.last().unwrap().commit_time.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let last_window = UNIX_EPOCH + Duration::from_secs(last / 10 * 10);
    let mut resume = Vec::new();
    for aggregated in [true, false] {
        let (stream, table) = (unique("resume"), unique("ctl"));
        let (a, b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 2).await;
        if aggregated {
            // Two buckets per shard: a put leaves two aggregates per window in each shard.
            let producer = a.producer(&stream).aggregating(Aggregation::default().buckets(4));
            produce_all(&producer, &all, deadline()).await;
        } else {
            produce_all(&a.producer(&stream), &all, deadline()).await;
        }
        replicate_all(&replicator(&a, &b, &stream).build().unwrap(), &a).await;
        resume.push(b.control.resume_point(&stream, &a.region, Duration::ZERO).await.unwrap().from);
    }
    assert_eq!(resume, [Some(last_window); 2], "aggregated, then one record per message");
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn a_commit_time_the_context_cannot_carry_fails_its_record_alone() {
    let env = Endpoint::from_env();
    let (stream, table) = (unique("pre1970"), unique("ctl"));
    let (a, _b) = pipeline(&env, "us-east-1", "us-west-2", &stream, &table, 1).await;
    let now = SystemTime::now();
    let before_1970 = UNIX_EPOCH - Duration::from_secs(1);
    // Milliseconds taken for seconds: past the year 9999, which RFC 3339 cannot write.
    let millis_as_seconds = UNIX_EPOCH + Duration::from_secs(1_796_000_000_000);
    let records = [
        ("k1", &b"one"[..], Some(now)),
        ("k1", &b"two"[..], Some(before_1970)),
        ("k2", &b"three"[..], Some(now)),
        ("k3", &b"four"[..], Some(millis_as_seconds)),
    ];
    let report = a.aggregating_producer(&stream).put(records).await;
    assert_eq!(report.failed.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 3], "{:?}", report.failed);
    for (f, says) in report.failed.iter().zip(["1970", "9999"]) {
        assert!(!f.error.is_retryable(), "{}", f.error);
        assert!(f.error.to_string().contains(says), "{}", f.error);
    }
    assert_eq!(report.put.iter().map(|p| p.index).collect::<Vec<_>>(), [0, 2]);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn a_window_that_cannot_be_encrypted_holds_back_the_later_windows() {
    let env = Endpoint::from_env();
    // Regions of its own: the KMS fault below must not reach the other tests of this binary.
    let (ra, rb) = ("ca-central-1", "sa-east-1");
    let (stream, table) = (unique("held"), unique("ctl"));
    let (a, _b) = pipeline(&env, ra, rb, &stream, &table, 1).await;
    // Three 10 s windows of 40 changes over 8 rows.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let base = UNIX_EPOCH + Duration::from_secs((now - 60) / 10 * 10);
    let all: Vec<Change> = (0..120).map(|i| change(i, 8, base, Duration::from_millis(250))).collect();
    let window = |c: &Change| (c.commit_time.duration_since(base).unwrap().as_secs() / 10) as usize;
    let producer = a.aggregating_producer(&stream);
    // The first window's data key is cached by a first put; then GenerateDataKey fails.
    let first: Vec<&Change> = all.iter().filter(|c| window(c) == 0).collect();
    assert!(producer.put_changes(&first).await.failed.is_empty());
    env.inject_fault("TrentService.GenerateDataKey", ra, 1000, "ThrottlingException").await;
    let rest: Vec<&Change> = all.iter().filter(|c| window(c) > 0).collect();
    let report = producer.put_changes(&rest).await;
    env.clear_faults_in(ra).await;
    assert!(report.put.is_empty(), "nothing of windows 1 and 2 went: {:?}", report.put.first());
    assert_eq!(report.failed.len(), rest.len(), "every record reported once");
    assert!(report.failed.iter().any(|f| matches!(f.error, KinesisError::HeldBack { .. })));
    for f in &report.failed {
        let w = window(rest[f.index]);
        assert!(f.error.is_retryable(), "{}", f.error);
        match (&f.error, w) {
            (KinesisError::NotEncrypted { .. }, 1) | (KinesisError::HeldBack { .. }, 2) => {}
            (e, w) => panic!("window {w}: {e}"),
        }
    }
    // Put again in order once KMS answers: everything arrives, in order per key.
    let again: Vec<&Change> = report.failed.iter().map(|f| rest[f.index]).collect();
    assert!(producer.put_changes(&again).await.failed.is_empty());
    let mut delivered = Delivered::default();
    consume_until(&a.consumer(&stream, Some("g")), a.kinesis.clone(), &mut delivered, 120, deadline()).await;
    assert_eq!(delivered.check(&all), Verdict::CLEAN);
}
