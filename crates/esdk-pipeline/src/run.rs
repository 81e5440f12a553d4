//! The demo's phases: set-up, production in A with replication and consumers in both Regions,
//! the failover to B, and the report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use esdk::{Client, EncryptionContext};
use esdk_kinesis::record::{CommitTimeInContext, RecordCodec, EC_STREAM};
use esdk_kinesis::{AggregatingProducer, Aggregation, Consumer, Producer, PutReport, ReaderConfig, Replicator};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::report::{changes, check, Change, Seen};
use crate::setup::{self, Side};
use crate::{Args, DemoResult};

/// Bytes, records and requests the producers used.
#[derive(Default)]
struct Produced {
    records: u64,
    plaintext_bytes: u64,
    record_bytes: u64,
    kinesis_records: u64,
    put_payload_units: u64,
    requests: u64,
}

/// The demo's producer: aggregating (the default) or one record per message.
enum DemoProducer {
    Aggregating(AggregatingProducer),
    Single(Producer),
}

impl DemoProducer {
    /// Records per `put` call: what a linger window of a busy producer would hold.
    fn chunk(&self) -> usize {
        match self {
            Self::Aggregating(_) => 2_000,
            Self::Single(_) => 500,
        }
    }

    async fn put(&self, changes: &[&Change]) -> PutReport {
        let records = changes.iter().map(|c| (c.key.as_str(), c.payload.as_slice(), Some(c.commit_time)));
        match self {
            Self::Aggregating(p) => p.put(records).await,
            Self::Single(p) => p.put(records).await,
        }
    }
}

/// Puts `changes` until every one is in the stream, in order per key: records that failed
/// (throttling beyond the retries, an unreachable Region) are put again, in order.
async fn produce(
    producer: &DemoProducer,
    changes: &[&Change],
    bar: &ProgressBar,
    deadline: Instant,
) -> DemoResult<Produced> {
    let mut produced = Produced::default();
    for chunk in changes.chunks(producer.chunk()) {
        let mut pending: Vec<&Change> = chunk.to_vec();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let report = producer.put(&pending).await;
            produced.records += report.put.len() as u64;
            produced.plaintext_bytes += report.plaintext_bytes;
            produced.record_bytes += report.record_bytes;
            produced.kinesis_records += report.kinesis_records;
            produced.put_payload_units += report.put_payload_units;
            produced.requests += report.requests;
            bar.inc(report.put.len() as u64);
            if let Some(f) = report.failed.iter().find(|f| !f.error.is_retryable()) {
                return Err(format!("record {} ({}) cannot be put: {}", f.index, f.partition_key, f.error));
            }
            pending = report.failed.iter().map(|f| pending[f.index]).collect();
            if !pending.is_empty() {
                if Instant::now() > deadline {
                    return Err(format!("{} records still not put at the deadline", pending.len()));
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(20)))).await;
            }
        }
    }
    Ok(produced)
}

async fn consume_loop(
    consumer: Consumer,
    kinesis: aws_sdk_kinesis::Client,
    seen: Arc<Mutex<Seen>>,
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
) -> DemoResult<()> {
    let mut reader = loop {
        match consumer.open(kinesis.clone()).await {
            Ok(r) => break r,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(format!("consumer: {e}")),
        }
    };
    loop {
        let (batch, outcome) = consumer.poll(&mut reader).await;
        // The application's part: take the records, then commit.
        let new = seen.lock().unwrap_or_else(|p| p.into_inner()).absorb(&outcome);
        bar.inc(new as u64);
        if let Err(e) = consumer.commit(&mut reader, &batch, &outcome).await {
            if !e.is_retryable() {
                return Err(format!("consumer: {e}"));
            }
        }
        if batch.is_empty() && stop.load(Ordering::Relaxed) {
            return Ok(());
        }
    }
}

async fn wait_until(deadline: Instant, what: &str, mut done: impl FnMut() -> bool) -> DemoResult<()> {
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn fast_reader() -> ReaderConfig {
    ReaderConfig::default().intervals(Duration::from_millis(200), Duration::from_millis(100))
}

/// Retries a control-plane step (an operator's command would be run again) until `deadline`.
async fn retry<T, F, Fut>(deadline: Instant, what: &str, mut step: F) -> DemoResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = DemoResult<T>>,
{
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

pub async fn run(args: Args, endpoint: Option<String>) -> DemoResult<bool> {
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut a = Side::new(&args.region_a, &args.table).await;
    let mut b = Side::new(&args.region_b, &args.table).await;

    // Set-up: key, streams, control tables and the active-Region flag.
    let (arn_a, arn_b) = match (&args.key_arn_a, &args.key_arn_b) {
        (Some(x), Some(y)) => (x.clone(), y.clone()),
        _ => setup::create_mrk(&a, &b).await?,
    };
    a.key_arn = arn_a;
    b.key_arn = arn_b;
    println!("multi-Region key: {} (replica {})", a.key_arn, b.key_arn);
    for side in [&a, &b] {
        setup::create_stream(side, &args.stream, args.shards).await?;
    }
    setup::control_tables([&a, &b], &args.stream, &a.region).await?;
    eprintln!(
        "streams {0:?} and control tables {1:?} ready in {2} and {3}; active Region {2}",
        args.stream, args.table, a.region, b.region
    );
    if let (true, Some(url)) = (args.chaos > 0.0, &endpoint) {
        crate::endpoint::inject_faults(url, args.chaos)?;
        eprintln!(
            "chaos: {:.0}% of the calls of every API fail (throttling, 5xx, PutRecords entries)",
            args.chaos * 100.0
        );
    }

    let codec = |side: &Side| -> DemoResult<RecordCodec> {
        RecordCodec::builder(side.cmm(&format!("producer-{}", side.region))?, &args.stream, &side.region)
            .commit_time(CommitTimeInContext::Window(args.commit_window))
            .build()
            .map_err(|e| e.to_string())
    };
    let producer = |side: &Side| -> DemoResult<DemoProducer> {
        let p = Producer::new(side.kinesis.clone(), &args.stream, codec(side)?, side.control.clone());
        Ok(if args.no_aggregate {
            DemoProducer::Single(p)
        } else {
            // Four buckets per shard: enough to spread over the shards, few enough to fill.
            let buckets = (4 * args.shards.max(1)) as u32;
            DemoProducer::Aggregating(p.aggregating(Aggregation::default().buckets(buckets)))
        })
    };
    let expected_ec: EncryptionContext = [(EC_STREAM, args.stream.as_str())].into_iter().collect();
    let consumer = |side: &Side| -> DemoResult<Consumer> {
        Ok(Consumer::new(Client::new(), side.cmm(&format!("consumer-{}", side.region))?)
            .expect_context(expected_ec.clone())
            .with_group(side.control.clone(), "demo-consumers", &args.stream, &side.region)
            .with_reader_config(fast_reader()))
    };
    let replicator = |from: &Side, to: &Side| -> DemoResult<Arc<Replicator>> {
        Replicator::builder(&from.region, &args.stream)
            .destination(to.kinesis.clone(), None)
            .checkpoint_table(to.control.clone())
            .allowed_keys([from.key_arn.as_str()])
            .map(|b| b.reader_config(fast_reader()))
            .and_then(|b| b.build())
            .map(Arc::new)
            .map_err(|e| e.to_string())
    };
    let (rep_ab, rep_ba) = (replicator(&a, &b)?, replicator(&b, &a)?);

    let n = args.records;
    let m = n * args.failover_percent / 100;
    let keys = args.keys.unwrap_or((n / 10).max(1)).max(1);
    let base = SystemTime::now() - args.commit_spacing * (n + m) as u32;
    let originals = changes(n + m, keys, base, args.commit_spacing);

    let bars = MultiProgress::new();
    let style =
        ProgressStyle::with_template("{prefix:>24} {bar:40} {pos}/{len} {per_sec}").map_err(|e| e.to_string())?;
    let bar = |prefix: String, len: usize| {
        let b = bars.add(ProgressBar::new(len as u64).with_style(style.clone()).with_prefix(prefix));
        b.enable_steady_tick(Duration::from_millis(200));
        b
    };
    let produced_bar = bar(format!("produced in {}", a.region), n);
    let rep_ab_bar = bar(format!("replicated {}→{}", a.region, b.region), n);
    let rep_ba_bar = bar(format!("replicated {}→{}", b.region, a.region), 0);
    let seen_a = Arc::new(Mutex::new(Seen::default()));
    let seen_b = Arc::new(Mutex::new(Seen::default()));
    let cons_a_bar = bar(format!("decrypted in {}", a.region), n);
    let cons_b_bar = bar(format!("decrypted in {}", b.region), n);
    let stop = Arc::new(AtomicBool::new(false));

    let mut tasks = Vec::new();
    for (rep, source, bar) in [(&rep_ab, &a, &rep_ab_bar), (&rep_ba, &b, &rep_ba_bar)] {
        let (rep, source, bar, stop) = (rep.clone(), source.kinesis.clone(), bar.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            rep.run(source, &stop, |o| bar.inc(o.replicated as u64)).await.map_err(|e| format!("replicator: {e}"))
        }));
    }
    for (side, seen, bar) in [(&a, &seen_a, &cons_a_bar), (&b, &seen_b, &cons_b_bar)] {
        let c = consumer(side)?;
        tasks.push(tokio::spawn(consume_loop(c, side.kinesis.clone(), seen.clone(), bar.clone(), stop.clone())));
    }

    // Phase 1: produce in A.
    let t0 = Instant::now();
    let first: Vec<&Change> = originals[..n].iter().collect();
    let produced_a = produce(&producer(&a)?, &first, &produced_bar, deadline).await?;
    let produce_secs = t0.elapsed().as_secs_f64();
    let distinct = |seen: &Arc<Mutex<Seen>>| seen.lock().map(|s| s.distinct()).unwrap_or(0);
    let phase1 =
        wait_until(deadline, "replication and both consumers", || distinct(&seen_a) >= n && distinct(&seen_b) >= n)
            .await;
    let phase1_secs = t0.elapsed().as_secs_f64();

    // Phase 2: fenced failover to B; the producer resumes there from the replication watermark.
    let mut replayed = 0usize;
    let mut resume_line = String::new();
    // Commit windows of the records each Region's producer encrypted, as the codec writes them
    // into the context: with caching, at most one data key each (an aggregate shows the earliest
    // window of its records, so a later record that shares one takes it: it can be fewer).
    let mode = CommitTimeInContext::Window(args.commit_window);
    let windows = |changes: &mut dyn Iterator<Item = &Change>| {
        changes
            .filter_map(|c| mode.render(c.commit_time).ok().flatten())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let windows_a = windows(&mut originals[..n].iter());
    let mut windows_b = 0;
    if phase1.is_ok() && m > 0 {
        let (epoch, resume_from) =
            retry(deadline, "failover", || setup::fail_over([&a, &b], &args.stream, &b.region, args.resume_margin))
                .await?;
        let replay: Vec<&Change> = match resume_from {
            Some(t) => originals[..n].iter().filter(|c| c.commit_time >= t).collect(),
            None => originals[..n].iter().collect(),
        };
        replayed = replay.len();
        resume_line = format!(
            "failover: active Region is now {} (epoch {epoch}); resume-from={}; the producer there re-sent {replayed} records, then {m} new ones",
            b.region,
            resume_from.map_or("<the beginning>".into(), |t| humantime::format_rfc3339_millis(t).to_string()),
        );
        bars.suspend(|| eprintln!("{resume_line}"));
        for b_ in [&cons_a_bar, &cons_b_bar] {
            b_.set_length((n + m) as u64);
        }
        rep_ba_bar.set_length((replayed + m) as u64);
        produced_bar.set_length((n + replayed + m) as u64);
        let second: Vec<&Change> = replay.into_iter().chain(&originals[n..]).collect();
        windows_b = windows(&mut second.iter().copied());
        produce(&producer(&b)?, &second, &produced_bar, deadline).await?;
    }
    let total = if phase1.is_ok() && m > 0 { n + m } else { n };
    let outcome = match phase1 {
        Ok(()) => {
            wait_until(deadline, "failover replication and consumers", || {
                distinct(&seen_a) >= total && distinct(&seen_b) >= total
            })
            .await
        }
        e => e,
    };
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("error: {e}"),
            Err(e) => eprintln!("error: task failed: {e}"),
        }
    }
    for b_ in [&produced_bar, &rep_ab_bar, &rep_ba_bar, &cons_a_bar, &cons_b_bar] {
        b_.finish();
    }

    // Report.
    let (ma, mb) = (rep_ab.metrics(), rep_ba.metrics());
    let (ka, kb) = (a.kms.counts(), b.kms.counts());
    println!(
        "records produced in {}: {n} in {produce_secs:.2} s = {:.0} records/s (end to end, both Regions decrypted: {phase1_secs:.2} s = {:.0} records/s)",
        a.region,
        n as f64 / produce_secs,
        n as f64 / phase1_secs
    );
    if produced_a.records > 0 {
        let per = |x: u64| x as f64 / produced_a.records as f64;
        println!(
            "bytes per record: {:.0} plaintext, {:.0} encrypted ({:.2}x){}",
            per(produced_a.plaintext_bytes),
            per(produced_a.record_bytes),
            produced_a.record_bytes as f64 / produced_a.plaintext_bytes.max(1) as f64,
            if args.no_aggregate { "; one record per message" } else { "; KPL aggregates" }
        );
        println!(
            "Kinesis records: {} for {} CDC records; PUT payload units: {} (25 KB each); PutRecords requests: {}",
            produced_a.kinesis_records, produced_a.records, produced_a.put_payload_units, produced_a.requests
        );
    }
    for (from, to, m_) in [(&a, &b, &ma), (&b, &a, &mb)] {
        println!(
            "replication {}→{}: {} records, {} replicas skipped (loop prevention), {} refused, {} forwarded while {} was not active, lag last {} ms / max {} ms",
            from.region,
            to.region,
            m_.records_replicated.load(Ordering::Relaxed),
            m_.records_skipped_replicas.load(Ordering::Relaxed),
            m_.records_refused.load(Ordering::Relaxed),
            m_.records_forwarded_while_inactive.load(Ordering::Relaxed),
            from.region,
            m_.last_lag_ms.load(Ordering::Relaxed),
            m_.max_lag_ms.load(Ordering::Relaxed)
        );
    }
    if !resume_line.is_empty() {
        println!("{resume_line}");
    }
    println!(
        "KMS calls: {} GenerateDataKey {} Decrypt {} | {} GenerateDataKey {} Decrypt {}",
        a.region, ka.generate_data_key, ka.decrypt, b.region, kb.generate_data_key, kb.decrypt
    );
    println!(
        "commit windows encrypted (at most one data key each, with caching): {} {windows_a} | {} {windows_b}",
        a.region, b.region
    );
    let mut ok = outcome.is_ok();
    if let Err(e) = &outcome {
        eprintln!("error: {e}");
    }
    for (side, seen) in [(&a, &seen_a), (&b, &seen_b)] {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let c = check(&seen, &originals[..total]);
        println!(
            "consumer {}: {} records delivered, {} duplicates recognised and dropped, {} poison, {} transient failures retried; lost {}, duplicated {}, out of order {}",
            side.region, seen.delivered_total, seen.duplicates, seen.poison, seen.transient, c.lost, c.duplicated, c.out_of_order
        );
        if c.lost + c.duplicated + c.out_of_order + c.different + seen.poison > 0 {
            ok = false;
            println!(
                "check FAILED in {}: {} lost, {} delivered twice, {} out of order, {} different",
                side.region, c.lost, c.duplicated, c.out_of_order, c.different
            );
        }
    }
    if ok {
        println!(
            "check: all {total} records decrypted to their originals in {} and {}, none lost, none twice, per key in order (failover replayed {replayed}); {:.1} s in all",
            a.region,
            b.region,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ok)
}
