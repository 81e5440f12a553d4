//! The `esdk-replicator` program itself against the local endpoint: in Lambda mode under a local
//! Lambda Runtime API with events built from real stream records, and in long-running mode as
//! two instances sharing one lease.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use esdk_kinesis::SourceRecord;
use esdk_testkit::aws::{Endpoint, ACCOUNT};
use esdk_testkit::lambda_api::{Outcome, RuntimeApi};
use esdk_testkit::pipeline::{changes, pipeline, produce_all, replicator, unique};
use serde_json::{json, Value};

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

/// A Kinesis event as the event source mapping delivers it.
fn event(region: &str, stream: &str, records: &[SourceRecord]) -> String {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let arrival = r.arrival.unwrap_or(SystemTime::now()).duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": format!("arn:aws:iam::{ACCOUNT}:role/esdk-replicator"),
                "awsRegion": region,
                "eventSourceARN": format!("arn:aws:kinesis:{region}:{ACCOUNT}:stream/{stream}"),
            })
        })
        .collect();
    json!({ "Records": records }).to_string()
}

/// The program in Lambda mode, with its standard output (EMF lines) collected.
struct Function {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    started: Instant,
}

impl Function {
    fn start(env: &Endpoint, api: &RuntimeApi, vars: &[(&str, &str)]) -> Self {
        let started = Instant::now();
        let mut child = api
            .command(env, env!("CARGO_BIN_EXE_esdk-replicator"))
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start esdk-replicator");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Self { child, stdout, started }
    }

    /// EMF documents printed so far.
    fn emf(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["_aws"].is_object())
            .collect()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn failures(outcome: &Outcome) -> Vec<String> {
    let Outcome::Response(body) = outcome else { panic!("the function failed: {outcome:?}") };
    let v: Value = serde_json::from_str(body).unwrap();
    v["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn lambda_forwards_byte_for_byte_names_failed_records_and_publishes_metrics_in_both_places() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("eu-west-1", "ca-central-1");
    let (stream, table) = (unique("fn"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 1).await;
    produce_all(&a.producer(&stream), &changes(100, 20), deadline()).await;
    let first = a.read_all(&stream).await;
    assert_eq!(first.len(), 100);

    let api = RuntimeApi::start();
    let function = Function::start(
        &env,
        &api,
        &[
            ("AWS_REGION", ra),
            ("ESDK_REPLICATE_TO", rb),
            ("ESDK_CONTROL_TABLE", &table),
            ("ESDK_SOURCE_STREAM", &stream),
            // One PutMetricData per batch, so CloudWatch has every value when the test reads it.
            ("ESDK_METRICS_INTERVAL", "0s"),
        ],
    );
    // With the stream named, init lists and registers its shards before any event arrives.
    let registered = Instant::now() + Duration::from_secs(20);
    while b.control.shard_progress(&stream, ra, &first[0].shard_id).await.unwrap().is_none() {
        assert!(Instant::now() < registered, "the shard was not registered during init");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ev = event(ra, &stream, &first);
    let answer = tokio::task::block_in_place(|| api.invoke(&ev, Duration::from_secs(60))).unwrap();
    println!(
        "cold start (debug build, process start to first response, 100 records): {:?}",
        function.started.elapsed()
    );
    assert_eq!(failures(&answer), Vec::<String>::new());
    let copied = b.read_all(&stream).await;
    assert_eq!(copied.len(), first.len());
    for (x, y) in first.iter().zip(&copied) {
        assert_eq!((&x.data, &x.partition_key), (&y.data, &y.partition_key), "forwarded byte for byte, in order");
    }
    let shard = &first[0].shard_id;
    let cp = b.control.shard_progress(&stream, ra, shard).await.unwrap().unwrap();
    assert_eq!(cp.sequence_number.as_deref(), Some(first.last().unwrap().sequence_number.as_str()));

    // The destination fails past every retry: the first record of the batch is named, nothing
    // is checkpointed past it; the retried batch goes through.
    produce_all(&a.producer(&stream), &changes(10, 5), deadline()).await;
    let second: Vec<SourceRecord> = a.read_all(&stream).await.into_iter().skip(100).collect();
    env.inject_fault_status("Kinesis_20131202.PutRecords", rb, 1_000, 500, "InternalFailure").await;
    let ev = event(ra, &stream, &second);
    let answer = tokio::task::block_in_place(|| api.invoke(&ev, Duration::from_secs(90))).unwrap();
    env.clear_faults_in(rb).await;
    assert_eq!(failures(&answer), [second[0].sequence_number.clone()]);
    assert_eq!(b.read_all(&stream).await.len(), 100);
    let answer = tokio::task::block_in_place(|| api.invoke(&ev, Duration::from_secs(60))).unwrap();
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(b.read_all(&stream).await.len(), 110);

    // Metrics: EMF on stdout, one document per batch, dimensions at the top level...
    let emf = function.emf();
    assert_eq!(emf.len(), 3, "{emf:?}");
    assert_eq!((emf[0]["Throughput"].as_f64(), emf[0]["Replicated"].as_f64()), (Some(100.0), Some(100.0)));
    assert_eq!((emf[1]["Failed"].as_f64(), emf[1]["Replicated"].as_f64()), (Some(10.0), Some(0.0)));
    assert_eq!(emf[2]["Replicated"].as_f64(), Some(10.0));
    assert!(emf[0]["ReplicationLagSeconds"].as_f64().unwrap() >= 0.0);
    for doc in &emf {
        assert_eq!(
            (doc["Stream"].as_str(), doc["SourceRegion"].as_str(), doc["DestinationRegion"].as_str()),
            (Some(stream.as_str()), Some(ra), Some(rb))
        );
    }
    // ... and the same values in the destination Region's CloudWatch.
    let cw = aws_sdk_cloudwatch::Client::new(&env.sdk_config(rb));
    let dims = [("Stream", stream.as_str()), ("SourceRegion", ra), ("DestinationRegion", rb)]
        .map(|(k, v)| aws_sdk_cloudwatch::types::Dimension::builder().name(k).value(v).build());
    let query = aws_sdk_cloudwatch::types::MetricDataQuery::builder()
        .id("replicated")
        .metric_stat(
            aws_sdk_cloudwatch::types::MetricStat::builder()
                .metric(
                    aws_sdk_cloudwatch::types::Metric::builder()
                        .namespace("esdk/replication")
                        .metric_name("Replicated")
                        .set_dimensions(Some(dims.to_vec()))
                        .build(),
                )
                .period(60)
                .stat("Sum")
                .build(),
        )
        .build();
    let now = SystemTime::now();
    let data = cw
        .get_metric_data()
        .metric_data_queries(query)
        .start_time((now - Duration::from_secs(600)).into())
        .end_time((now + Duration::from_secs(60)).into())
        .send()
        .await
        .unwrap();
    let sum: f64 = data.metric_data_results()[0].values().iter().sum();
    assert_eq!(sum, 110.0, "{data:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn lambda_in_the_inactive_region_forwards_nothing_and_refuses_foreign_events() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("il-central-1", "me-central-1");
    let (stream, table) = (unique("fn-inactive"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 1).await;
    // B is active: its records reach A through B → A replication; A's stream holds only replicas.
    for side in [&a, &b] {
        let flag = side.control.active_region(&stream).await.unwrap();
        side.control.set_active_region(&stream, rb, flag.epoch).await.unwrap();
    }
    produce_all(&b.producer(&stream), &changes(30, 10), deadline()).await;
    let back = replicator(&b, &a, &stream).build().unwrap();
    let in_b = b.read_all(&stream).await;
    back.replicate_records(&in_b, &[]).await.unwrap();
    let in_a = a.read_all(&stream).await;
    assert_eq!(in_a.len(), 30);

    let api = RuntimeApi::start();
    let function =
        Function::start(&env, &api, &[("AWS_REGION", ra), ("ESDK_REPLICATE_TO", rb), ("ESDK_CONTROL_TABLE", &table)]);
    let ev = event(ra, &stream, &in_a);
    let answer = tokio::task::block_in_place(|| api.invoke(&ev, Duration::from_secs(60))).unwrap();
    assert_eq!(failures(&answer), Vec::<String>::new(), "skipped records are done, not failed");
    assert_eq!(b.read_all(&stream).await.len(), 30, "nothing forwarded back to B");
    let emf = function.emf();
    assert_eq!((emf[0]["SkippedReplicas"].as_f64(), emf[0]["Replicated"].as_f64()), (Some(30.0), Some(0.0)), "{emf:?}");
    // With the default flush interval (10 s), one batch sends nothing cross-Region yet.
    let sent = env.stats().await.get(&format!("{rb}:GraniteServiceVersion20100801.PutMetricData")).copied();
    assert_eq!(sent, None, "PutMetricData waits for the flush interval");

    // An event from another Region's stream is refused as a whole, nothing forwarded.
    let foreign = event("us-west-1", &stream, &in_a);
    let answer = tokio::task::block_in_place(|| api.invoke(&foreign, Duration::from_secs(60))).unwrap();
    let Outcome::Error(body) = answer else { panic!("a foreign event must fail: {answer:?}") };
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["errorType"], "esdk_replicator::Refused", "{e}");
    assert!(e["errorMessage"].as_str().unwrap().contains("us-west-1"), "{e}");

    // A malformed event fails naming the field, and the process serves the next one.
    let mut bad: Value = serde_json::from_str(&event(ra, &stream, &in_a)).unwrap();
    bad["Records"][1]["kinesis"]["data"] = Value::from(17);
    let answer = tokio::task::block_in_place(|| api.invoke(&bad.to_string(), Duration::from_secs(60))).unwrap();
    let Outcome::Error(body) = answer else { panic!("a malformed event must fail: {answer:?}") };
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["errorType"], "esdk_replicator::Failed", "{e}");
    assert!(e["errorMessage"].as_str().unwrap().contains("Records[1].kinesis.data"), "{e}");
    let again = tokio::task::block_in_place(|| api.invoke(&foreign, Duration::from_secs(60))).unwrap();
    assert!(matches!(again, Outcome::Error(_)), "{again:?}");
    assert_eq!(b.read_all(&stream).await.len(), 30);
}

#[test]
fn a_bad_setting_fails_the_init_naming_the_variable() {
    let api = RuntimeApi::start();
    let out = Command::new(env!("CARGO_BIN_EXE_esdk-replicator"))
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "esdk-replicator")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("ESDK_CONTROL_TABLE", "ctl")
        .env_remove("ESDK_REPLICATE_TO")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ESDK_REPLICATE_TO: missing"), "{stderr}");
    assert!(api.first_poll().is_none(), "no event is taken before the init succeeds");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_service(env: &Endpoint, stream: &str, from: &str, to: &str, table: &str, owner: &str, port: u16) -> Child {
    env.command(env!("CARGO_BIN_EXE_esdk-replicator"))
        .args(["run", "--stream", stream, "--from", from, "--to", to, "--control-table", table, "--owner", owner])
        .args(["--poll-interval", "5ms", "--idle-interval", "20ms", "--lease-ttl", "3s"])
        .args(["--health-addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start esdk-replicator")
}

/// `GET path` on the health port: (status code, body).
fn health(port: u16, path: &str) -> Option<(u16, Value)> {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()?;
    Some((code, body))
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn long_running_one_owner_takeover_after_a_kill_and_a_clean_stop() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-northeast-2", "sa-east-1");
    let (stream, table) = (unique("svc"), unique("ctl"));
    let (a, b) = pipeline(&env, ra, rb, &stream, &table, 2).await;
    let ports = [free_port(), free_port()];
    let mut one = spawn_service(&env, &stream, ra, rb, &table, "one", ports[0]);
    let owner = wait_for("a lease owner", async || b.control.lease(&stream, ra).await.ok().flatten()).await;
    assert_eq!(owner.owner, "one");
    let mut two = spawn_service(&env, &stream, ra, rb, &table, "two", ports[1]);
    let roles = wait_for("both health endpoints", async || {
        let r = [health(ports[0], "/ready")?, health(ports[1], "/ready")?];
        (r[1].1["role"] == "standby").then_some(r)
    })
    .await;
    assert_eq!((roles[0].0, roles[0].1["role"].as_str()), (200, Some("active")));
    assert_eq!(roles[1].0, 200, "a standby is ready");
    assert_eq!(health(ports[1], "/live").unwrap().0, 200);

    produce_all(&a.producer(&stream), &changes(40, 8), deadline()).await;
    wait_for("the first 40 records in B", async || (b.read_all(&stream).await.len() >= 40).then_some(())).await;

    // The owner dies without releasing: the standby takes over once the lease expires.
    one.kill().unwrap();
    one.wait().unwrap();
    let killed = Instant::now();
    produce_all(&a.producer(&stream), &changes(40, 8), deadline()).await;
    wait_for("the next 40 records in B", async || (b.read_all(&stream).await.len() >= 80).then_some(())).await;
    println!("takeover after a kill: all records in B {:?} after the kill (lease TTL 3 s)", killed.elapsed());
    assert_eq!(b.control.lease(&stream, ra).await.unwrap().unwrap().owner, "two");
    assert_eq!(health(ports[1], "/ready").unwrap().1["role"], "active");
    let copied: std::collections::HashSet<_> = b.read_all(&stream).await.into_iter().map(|r| r.data).collect();
    let produced: std::collections::HashSet<_> = a.read_all(&stream).await.into_iter().map(|r| r.data).collect();
    assert_eq!(copied, produced, "nothing lost (a replay after the kill would only add duplicates)");

    // SIGTERM: the batch in flight finishes, the lease is released at once.
    let status = Command::new("kill").args(["-TERM", &two.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = two.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(b.control.lease(&stream, ra).await.unwrap(), None, "released on SIGTERM");
}
