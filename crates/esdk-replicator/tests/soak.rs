//! Soak: `SOAK_RECORDS` user records (default 20,000, what CI runs; `scripts/soak` runs
//! 1,000,000) through an aggregating producer, the `esdk-replicator` program and one consumer
//! process per Region, while `SOAK_FAULTS` (default 0.05) of the calls of every API in both
//! Regions fail at random (throttling, 5xx, single `PutRecords` entries).
//!
//! Each consumer process checks what it delivers in constant memory (per row the next version
//! it expects) and reports lost, duplicated and out-of-order records and its RSS as the count
//! grows; the replicator's RSS is sampled from `/proc` while records flow. Passes when nothing
//! is lost, duplicated or out of order in either Region and every process's peak RSS is at most
//! 64 MiB and does not grow with the record count.
//!
//! Its own harness (`harness = false`): the same binary is the consumer process
//! (`soak --consumer …`). Like the `#[ignore]`d tests it runs only with `--include-ignored` or
//! `--ignored` (what `scripts/test` passes), because it needs the local endpoint.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use esdk::keyring::kms::MeteredKmsClient;
use esdk_kinesis::ControlTable;
use esdk_testkit::aws::Endpoint;
use esdk_testkit::pipeline::{change, pipeline, produce_all, unique, Side};
use serde::Deserialize;

/// Peak RSS allowed for the replicator and each consumer.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Rows of the synthetic table (each updated records / ROWS times).
const ROWS: usize = 1_000;
/// Changes produced per `produce_all` call of the harness (bounds its own memory).
const CHUNK: usize = 10_000;

fn records() -> usize {
    std::env::var("SOAK_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn faults() -> f64 {
    std::env::var("SOAK_FAULTS").ok().and_then(|v| v.parse().ok()).unwrap_or(0.05)
}

fn timeout() -> Duration {
    Duration::from_secs(120 + records() as u64 / 200)
}

/// `VmRSS` or `VmHWM` of a process, in KiB (0 once it has exited; the checks refuse 0).
fn status_kib(pid: &str, field: &str) -> u64 {
    esdk_testkit::proc_status_kib(pid, field.trim_end_matches(':')).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--consumer") {
        return consumer(&args);
    }
    if !args.iter().any(|a| a == "--include-ignored" || a == "--ignored") {
        println!("soak: ignored (needs the local AWS endpoint: run scripts/test or scripts/soak)");
        return;
    }
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(soak());
}

/// Kills the child processes left when the soak ends, passing or not (and so on a panic).
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a consumer process reports as its last line.
#[derive(Debug, Deserialize)]
struct Report {
    region: String,
    delivered: usize,
    lost: usize,
    duplicated: usize,
    out_of_order: usize,
    duplicates_dropped: usize,
    peak_rss_kib: u64,
    /// `(records delivered, VmRSS KiB)` at every tenth of the way.
    rss_kib_at: Vec<(usize, u64)>,
}

async fn soak() {
    let n = records();
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-southeast-1", "eu-west-3");
    let (stream, table) = (unique("soak"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    println!("soak: {n} records, {:.0}% faults on every API in {ra} and {rb}", faults() * 100.0);

    let replicator = env
        .command(env!("CARGO_BIN_EXE_esdk-replicator"))
        .args(["run", "--stream", &stream, "--from", ra, "--to", rb, "--control-table", &table])
        .args(["--poll-interval", "5ms", "--idle-interval", "20ms"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start esdk-replicator");
    let replicator_pid = replicator.id().to_string();
    let mut reap = Reap(vec![replicator]);
    let consumers: Vec<Child> = [&a, &b]
        .iter()
        .map(|side| {
            env.command(std::env::current_exe().unwrap())
                .args(["--consumer", &side.region, &stream, &table, &side.key_arn, &n.to_string()])
                .env("MOTO_ENDPOINT", env.url())
                .env("RUST_BACKTRACE", "0")
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a consumer process")
        })
        .collect();
    env.inject_chaos(ra, faults(), 31).await;
    env.inject_chaos(rb, faults(), 32).await;

    // The replicator's RSS while records flow.
    let samples = Arc::new(Mutex::new(Vec::<(Duration, u64)>::new()));
    let sampler = {
        let (samples, pid, start) = (samples.clone(), replicator_pid.clone(), Instant::now());
        tokio::spawn(async move {
            loop {
                let rss = status_kib(&pid, "VmRSS:");
                if rss == 0 {
                    break;
                }
                samples.lock().unwrap().push((start.elapsed(), rss));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let started = Instant::now();
    let deadline = started + timeout();
    let producer = a.aggregating_producer(&stream);
    let spacing = Duration::from_millis(1);
    let base = SystemTime::now() - spacing * n as u32;
    for first in (0..n).step_by(CHUNK) {
        let chunk: Vec<_> = (first..(first + CHUNK).min(n)).map(|i| change(i, ROWS, base, spacing)).collect();
        produce_all(&producer, &chunk, deadline).await;
    }
    let produced = started.elapsed();

    let mut reports = Vec::new();
    let mut outputs = Vec::new();
    for mut child in consumers {
        outputs.push(child.stdout.take().unwrap());
        reap.0.push(child);
    }
    for (i, out) in outputs.into_iter().enumerate() {
        // Until the consumer exits (or `reap` kills it): its stdout closes.
        let reader = tokio::task::spawn_blocking(move || {
            BufReader::new(out).lines().map_while(Result::ok).collect::<Vec<String>>()
        });
        let lines = match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), reader).await {
            Ok(lines) => lines.unwrap(),
            Err(_) => {
                drop(reap);
                panic!("the consumers did not finish before the deadline");
            }
        };
        let status = reap.0[1 + i].wait().unwrap();
        let last = lines.last().cloned().unwrap_or_default();
        assert!(status.success(), "consumer failed ({status}): {}", lines.join("\n"));
        reports.push(serde_json::from_str::<Report>(&last).unwrap_or_else(|e| panic!("{e}: {last:?}")));
    }
    let done = started.elapsed();
    let replicator_peak = status_kib(&replicator_pid, "VmHWM:");
    drop(reap);
    sampler.await.unwrap();
    env.clear_faults_in(ra).await;
    env.clear_faults_in(rb).await;

    println!(
        "soak: produced in {:.1} s ({:.0} records/s); both Regions delivered in {:.1} s ({:.0} records/s)",
        produced.as_secs_f64(),
        n as f64 / produced.as_secs_f64(),
        done.as_secs_f64(),
        n as f64 / done.as_secs_f64()
    );
    let samples = samples.lock().unwrap().clone();
    let tenths: Vec<u64> =
        (1..=10).filter_map(|t| samples.get((samples.len() * t / 10).saturating_sub(1)).map(|s| s.1 / 1024)).collect();
    println!(
        "soak replicator: peak RSS {:.1} MiB; RSS (MiB) at each tenth of the run: {tenths:?}",
        replicator_peak as f64 / 1024.0
    );
    for r in &reports {
        let at: Vec<String> = r.rss_kib_at.iter().map(|(k, rss)| format!("{k}: {:.1}", *rss as f64 / 1024.0)).collect();
        println!(
            "soak consumer ({}): {} delivered, lost {}, duplicated {}, out of order {}; {} duplicates recognised and dropped; peak RSS {:.1} MiB; RSS (MiB) by records delivered: {}",
            r.region,
            r.delivered,
            r.lost,
            r.duplicated,
            r.out_of_order,
            r.duplicates_dropped,
            r.peak_rss_kib as f64 / 1024.0,
            at.join(", ")
        );
    }

    for r in &reports {
        assert_eq!((r.delivered, r.lost, r.duplicated, r.out_of_order), (n, 0, 0, 0), "{r:?}");
    }
    // Memory is read from /proc: on other systems the soak says so instead of passing on zeros.
    if !cfg!(target_os = "linux") {
        println!("soak: memory NOT measured (RSS is read from /proc, Linux only); records checked");
        return;
    }
    assert!(replicator_peak > 0 && !samples.is_empty(), "the replicator's RSS was not read from /proc");
    for r in &reports {
        assert!(r.peak_rss_kib > 0 && r.rss_kib_at.iter().all(|s| s.1 > 0), "RSS not read from /proc: {r:?}");
        assert!(r.peak_rss_kib <= RSS_LIMIT_KIB, "consumer in {}: peak RSS {} KiB", r.region, r.peak_rss_kib);
        flat(&format!("consumer in {}", r.region), &r.rss_kib_at.iter().map(|s| s.1).collect::<Vec<_>>());
    }
    assert!(replicator_peak <= RSS_LIMIT_KIB, "replicator: peak RSS {replicator_peak} KiB");
    flat("replicator", &samples.iter().map(|s| s.1).collect::<Vec<_>>());
}

/// RSS does not grow with the record count: the last fifth of the samples stays within 25% (and
/// 4 MiB) of the highest of the second fifth (the first fifth is start-up: TLS, clients, pools).
fn flat(who: &str, rss_kib: &[u64]) {
    assert!(rss_kib.len() >= 5, "{who}: too few RSS samples ({rss_kib:?})");
    let fifth = rss_kib.len() / 5;
    let early = rss_kib[fifth..2 * fifth].iter().max().copied().unwrap_or(0);
    let late = rss_kib[rss_kib.len() - fifth..].iter().max().copied().unwrap_or(0);
    assert!(late <= early + (early / 4).max(4096), "{who}: RSS grew from {early} KiB to {late} KiB as records flowed");
}

/// A CDC row change as the producer wrote it (`esdk_testkit::pipeline::change`).
#[derive(Deserialize)]
struct Row {
    #[serde(rename = "Key")]
    key: usize,
    #[serde(rename = "Version")]
    version: usize,
}

/// The consumer process: `--consumer REGION STREAM TABLE KEY_ARN RECORDS`. Consumes in group
/// `soak` until every row has all its versions (or the soak's deadline), checking each
/// delivery against the next version its row expects; prints a [`Report`] as its last line.
fn consumer(args: &[String]) {
    let i = args.iter().position(|a| a == "--consumer").unwrap();
    let [region, stream, table, key_arn, n] = &args[i + 1..i + 6] else { panic!("consumer arguments: {args:?}") };
    let n: usize = n.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let env = Endpoint::from_env();
        let side = Side {
            region: region.clone(),
            kinesis: env.kinesis(region),
            control: ControlTable::new(env.dynamodb(region), table),
            kms: MeteredKmsClient::new(env.kms(region)),
            key_arn: key_arn.clone(),
        };
        let consumer = side.consumer(stream, Some("soak"));
        let deadline = Instant::now() + timeout();
        let mut reader = loop {
            match consumer.open(side.kinesis.clone()).await {
                Ok(r) => break r,
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("consumer open: {e}"),
            }
        };
        let per_row = n.div_ceil(ROWS);
        let expected = |row: usize| (0..per_row).filter(|v| v * ROWS + row < n).count();
        let mut next = vec![0usize; ROWS];
        let (mut delivered, mut duplicated, mut out_of_order, mut dropped) = (0, 0, 0, 0);
        let mut rss_kib_at = Vec::new();
        // After the last expected record, polling goes on until nothing new came for QUIET, so
        // a record delivered twice late is seen too.
        const QUIET: Duration = Duration::from_secs(3);
        let mut last_new = Instant::now();
        while (delivered < n || last_new.elapsed() < QUIET) && Instant::now() < deadline {
            let (batch, outcome) = consumer.poll(&mut reader).await;
            if !outcome.delivered.is_empty() {
                last_new = Instant::now();
            }
            dropped += outcome.duplicates.len();
            for d in &outcome.delivered {
                let row: Row = serde_json::from_slice(&d.plaintext).expect("a CDC row change");
                assert!(row.key < ROWS, "row {} outside the table", row.key);
                match row.version.cmp(&next[row.key]) {
                    std::cmp::Ordering::Equal => {
                        next[row.key] += 1;
                        delivered += 1;
                        if rss_kib_at.len() < delivered * 10 / n {
                            rss_kib_at.push((delivered, status_kib("self", "VmRSS:")));
                        }
                    }
                    std::cmp::Ordering::Less => duplicated += 1,
                    std::cmp::Ordering::Greater => out_of_order += 1,
                }
            }
            if let Err(e) = consumer.commit(&mut reader, &batch, &outcome).await {
                assert!(e.is_retryable(), "commit: {e}");
            }
        }
        let lost: usize = (0..ROWS).map(|row| expected(row) - next[row].min(expected(row))).sum();
        println!(
            "{}",
            serde_json::json!({
                "region": region,
                "delivered": delivered,
                "lost": lost,
                "duplicated": duplicated,
                "out_of_order": out_of_order,
                "duplicates_dropped": dropped,
                "peak_rss_kib": status_kib("self", "VmHWM:"),
                "rss_kib_at": rss_kib_at,
            })
        );
    });
}
