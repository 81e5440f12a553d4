//! Whole-process measurement of the Lambda mode (run by `scripts/bench-lambda`, which builds the
//! release binary and starts the local endpoint): cold start (process start to the first
//! response, 100-record event), peak RSS, and the warm per-batch overhead on 500-record events
//! against a baseline measured in the same run: the same AWS calls made directly with the SDK
//! (PutRecords of the same 500 records, one control-table write, one PutMetricData).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use esdk_kinesis::SourceRecord;
use esdk_testkit::aws::{Endpoint, ACCOUNT};
use esdk_testkit::lambda_api::{Outcome, RuntimeApi};
use esdk_testkit::pipeline::{changes, pipeline, produce_all, unique};
use serde_json::{json, Value};

const COLD_STARTS: usize = 5;
const WARM_BATCHES: usize = 100;
/// The baseline sends its metrics once per this many batches (the function: once per 10 s).
const METRICS_EVERY: usize = 40;

fn event(region: &str, stream: &str, records: &[SourceRecord]) -> String {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": r.arrival.unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs_f64(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "awsRegion": region,
                "eventSourceARN": format!("arn:aws:kinesis:{region}:{ACCOUNT}:stream/{stream}"),
            })
        })
        .collect();
    json!({ "Records": records }).to_string()
}

fn peak_rss_kib(pid: u32) -> u64 {
    esdk_testkit::proc_status_kib(&pid.to_string(), "VmHWM").unwrap_or(0)
}

/// CPU time a process has used so far, summed over its threads, in nanoseconds (the first field
/// of each thread's `/proc/<pid>/task/<tid>/schedstat`: time on a CPU, user and system; the
/// 10 ms ticks of `/proc/<pid>/stat` are too coarse for a 1 ms budget).
fn cpu_time(pid: &str) -> Duration {
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    let ns: u64 = tasks
        .iter()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_nanos(ns)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = std::env::var("ESDK_REPLICATOR_BIN").unwrap_or_else(|_| "target/release/esdk-replicator".into());
    let size = std::fs::metadata(&bin).unwrap_or_else(|e| panic!("{bin}: {e} (build it with --release)")).len();
    let env = Endpoint::from_env();
    let (ra, rb) = ("us-east-2", "eu-north-1");
    let (stream, table) = (unique("bench"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 1).await;
    let baseline_stream = format!("{stream}-baseline");
    env.create_stream(rb, &baseline_stream, 1).await;
    let total = COLD_STARTS * 100 + WARM_BATCHES * 500;
    let deadline = Instant::now() + Duration::from_secs(600);
    produce_all(&a.producer(&stream), &changes(total, 1000), deadline).await;
    let records = a.read_all(&stream).await;
    assert_eq!(records.len(), total);
    let (cold, warm) = records.split_at(COLD_STARTS * 100);
    // As deploy/template.yaml configures the function (the stream named: init warms up).
    let vars = [
        ("AWS_REGION", ra),
        ("ESDK_REPLICATE_TO", rb),
        ("ESDK_CONTROL_TABLE", table.as_str()),
        ("ESDK_SOURCE_STREAM", stream.as_str()),
    ];
    let spawn = |api: &RuntimeApi| {
        api.command(&env, &bin)
            .env("RUST_LOG", "warn")
            .envs(vars)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let answer_ok = |o: Outcome| match o {
        Outcome::Response(body) => assert!(body.contains("\"batchItemFailures\":[]"), "{body}"),
        Outcome::Error(e) => panic!("{e}"),
    };

    // Cold starts: a new process per 100-record event.
    let (mut colds, mut inits) = (Vec::new(), Vec::new());
    let mut cold_rss = 0;
    for chunk in cold.chunks(100) {
        let api = RuntimeApi::start();
        let ev = event(ra, &stream, chunk);
        let t0 = Instant::now();
        let mut child = spawn(&api);
        let out = tokio::task::block_in_place(|| api.invoke(&ev, Duration::from_secs(30))).unwrap();
        colds.push(t0.elapsed());
        inits.push(api.first_poll().unwrap() - t0);
        answer_ok(out);
        cold_rss = cold_rss.max(peak_rss_kib(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    // Warm: one process, 500-record events; the baseline makes the same calls directly.
    let api = RuntimeApi::start();
    let mut child = spawn(&api);
    let kinesis = env.kinesis(rb);
    let dynamodb = env.dynamodb(rb);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&env.sdk_config(rb));
    let (mut lambda, mut direct) = (Vec::new(), Vec::new());
    let before = env.stats().await;
    let pid = child.id().to_string();
    let (mut function_cpu, mut baseline_cpu) = (Vec::new(), Vec::new());
    // LAMBDA_BENCH_PERF=<file>: profile the function during the warm batches (perf record).
    let mut perf = std::env::var("LAMBDA_BENCH_PERF").ok().map(|out| {
        Command::new("perf")
            .args(["record", "-F", "1999", "-g", "-o", &out, "-p", &pid])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    for (i, batch) in warm.chunks(500).enumerate() {
        let ev = event(ra, &stream, batch);
        let (cpu0, t0) = (cpu_time(&pid), Instant::now());
        let out = tokio::task::block_in_place(|| api.invoke(&ev, Duration::from_secs(30))).unwrap();
        let took = t0.elapsed();
        let function_cpu_batch = cpu_time(&pid) - cpu0;
        answer_ok(out);
        let (cpu0, t0) = (cpu_time("self"), Instant::now());
        let entries: Vec<_> = batch
            .iter()
            .map(|r| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(&r.partition_key)
                    .data(aws_sdk_kinesis::primitives::Blob::new(r.data.to_vec()))
                    .build()
                    .unwrap()
            })
            .collect();
        let put = kinesis.put_records().stream_name(&baseline_stream).set_records(Some(entries)).send().await.unwrap();
        assert_eq!(put.failed_record_count(), Some(0));
        dynamodb
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S("baseline".into()))
            .item("sk", AttributeValue::S(i.to_string()))
            .item("seq", AttributeValue::S(batch.last().unwrap().sequence_number.clone()))
            .send()
            .await
            .unwrap();
        let data: Vec<_> =
            ["Throughput", "Replicated", "Aggregates", "Refused", "SkippedReplicas", "Failed", "ReplicationLagSeconds"]
                .iter()
                .map(|n| {
                    aws_sdk_cloudwatch::types::MetricDatum::builder()
                        .metric_name(*n)
                        .value(1.0)
                        .timestamp(SystemTime::now().into())
                        .build()
                })
                .collect();
        // The function sends its metrics once per flush interval (10 s), not per batch.
        if i % METRICS_EVERY == 0 {
            cloudwatch.put_metric_data().namespace("esdk/bench").set_metric_data(Some(data)).send().await.unwrap();
        }
        let base = t0.elapsed();
        let baseline_cpu_batch = cpu_time("self") - cpu0;
        // The first warm batch also lists the shards and reads the flag: measured, not counted.
        if i > 0 {
            lambda.push(took);
            direct.push(base);
            function_cpu.push(function_cpu_batch);
            baseline_cpu.push(baseline_cpu_batch);
        }
    }
    let after = env.stats().await;
    if let Some(p) = perf.as_mut() {
        let _ = Command::new("kill").args(["-INT", &p.id().to_string()]).status();
        let _ = p.wait();
    }
    // AWS calls per warm batch by the function (the baseline's calls taken off: one PutRecords
    // and one PutItem per batch, one PutMetricData per METRICS_EVERY batches).
    let mut calls: Vec<(String, f64)> = after
        .iter()
        .filter(|(k, _)| !k.contains(':'))
        .map(|(k, v)| {
            let baseline = match k.as_str() {
                "Kinesis_20131202.PutRecords" | "DynamoDB_20120810.PutItem" => WARM_BATCHES,
                "GraniteServiceVersion20100801.PutMetricData" => WARM_BATCHES.div_ceil(METRICS_EVERY),
                _ => 0,
            } as u64;
            (k.clone(), (v - before.get(k).copied().unwrap_or(0)).saturating_sub(baseline) as f64 / WARM_BATCHES as f64)
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    println!("AWS calls per warm batch by the function: {calls:?}");
    let warm_rss = peak_rss_kib(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(b.read_all(&stream).await.len(), total, "every record replicated");

    let (l, d) = (median(lambda), median(direct));
    println!("binary: {bin}, {:.1} MiB", size as f64 / (1 << 20) as f64);
    println!(
        "cold start (process start to first response, 100 records): median {:?}, max {:?} over {COLD_STARTS}; of which init (start to the first poll of the runtime API) median {:?}; peak RSS {:.1} MiB",
        median(colds.clone()),
        colds.iter().max().unwrap(),
        median(inits),
        cold_rss as f64 / 1024.0
    );
    println!(
        "warm 500-record batch: invocation median {l:?}, the same calls made directly {d:?} (ratio {:.3}); overhead {:?} per 500 records; peak RSS {:.1} MiB",
        l.as_secs_f64() / d.as_secs_f64(),
        l.saturating_sub(d),
        warm_rss as f64 / 1024.0
    );
    // Medians over the batches, each batch's function run next to its baseline run: a burst of
    // noise on this shared machine moves one batch, not the result.
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let differences: Vec<Duration> =
        function_cpu.iter().zip(&baseline_cpu).map(|(f, b)| f.saturating_sub(*b)).collect();
    println!(
        "CPU per warm 500-record batch: function median {:?} (mean {:?}), the same SDK calls made directly median {:?} (mean {:?}); difference per batch median {:?}, ratio of medians {:.3}",
        median(function_cpu.clone()),
        mean(&function_cpu),
        median(baseline_cpu.clone()),
        mean(&baseline_cpu),
        median(differences),
        median(function_cpu.clone()).as_secs_f64() / median(baseline_cpu.clone()).as_secs_f64()
    );
}
