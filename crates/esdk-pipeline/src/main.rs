//! `esdk-pipeline`: the demo CDC pipeline. Producer → stream in Region A → crypto-blind
//! replicator → the same stream in Region B → consumers in both Regions, then a failover to B.
//!
//! By default it starts the local AWS endpoint of this repository (moto with
//! `scripts/moto_plus.py`, installed into `.venv-test` on first use) and stops it at the end;
//! `--endpoint URL` uses another endpoint, `--aws` the standard AWS environment unchanged.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use esdk::keyring::kms::{AwsSdkKmsClient, KmsClient, KmsMrkKeyring, MeteredKmsClient};
use esdk::{CachingCmm, Client, DefaultCmm, EncryptionContext, LocalCache, MaterialsManager};
use esdk_kinesis::record::{CommitTimeInContext, RecordCodec, EC_STREAM};
use esdk_kinesis::{ConsumeOutcome, Consumer, ControlTable, Producer, Replicator, StartPosition, StreamReader};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Parser, Debug)]
#[command(
    name = "esdk-pipeline",
    version,
    about = "Demo: encrypted CDC records replicated across Regions through Kinesis"
)]
struct Args {
    /// Synthetic CDC records to produce in Region A.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    /// Records produced in Region B after the failover, as a percentage of --records (0: no failover).
    #[arg(long, default_value_t = 10)]
    failover_percent: usize,
    /// Use this AWS endpoint (e.g. an already running local one) instead of starting one.
    #[arg(long, conflicts_with = "aws")]
    endpoint: Option<String>,
    /// Use the standard AWS environment (credentials, endpoints) as it is. Creates real resources.
    #[arg(long)]
    aws: bool,
    /// Region A (producer first, primary multi-Region key).
    #[arg(long, default_value = "us-east-1")]
    region_a: String,
    /// Region B (replica).
    #[arg(long, default_value = "us-west-2")]
    region_b: String,
    /// Stream name (the same in both Regions).
    #[arg(long, default_value = "esdk-demo-cdc")]
    stream: String,
    /// DynamoDB control table (active Region, checkpoints), created in both Regions.
    #[arg(long, default_value = "esdk-demo-replication")]
    table: String,
    /// Shards per stream, when the demo creates the streams.
    #[arg(long, default_value_t = 2)]
    shards: i32,
    /// Use these multi-Region key ARNs (primary in A, replica in B) instead of creating a key.
    #[arg(long, requires = "key_arn_b")]
    key_arn_a: Option<String>,
    /// Replica ARN in Region B (with --key-arn-a).
    #[arg(long, requires = "key_arn_a")]
    key_arn_b: Option<String>,
    /// Commit-time window written into the encryption context (one data key per window).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    commit_window: Duration,
    /// Commit-time spacing of the synthetic records.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    commit_spacing: Duration,
    /// Give up after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

type DemoResult<T> = Result<T, String>;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.records == 0 {
        eprintln!("error: --records must be at least 1");
        return ExitCode::from(2);
    }
    // The endpoint is chosen (and started) before any thread exists, so the environment it
    // sets is seen by every SDK client.
    let _endpoint = match choose_endpoint(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A local endpoint this process started; stopped (by PID) on drop.
struct LocalEndpoint {
    child: Child,
}

impl Drop for LocalEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_env(key: &str, value: &str) {
    // Called from `main` before the runtime or any other thread starts.
    std::env::set_var(key, value);
}

fn choose_endpoint(args: &Args) -> DemoResult<Option<LocalEndpoint>> {
    if args.aws {
        return Ok(None);
    }
    let (url, started) = match &args.endpoint {
        Some(url) => (url.clone(), None),
        None => {
            let (url, ep) = start_local_endpoint()?;
            (url, Some(ep))
        }
    };
    set_env("AWS_ENDPOINT_URL", &url);
    set_env("AWS_EC2_METADATA_DISABLED", "true");
    if started.is_some() || std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        set_env("AWS_ACCESS_KEY_ID", "testing");
        set_env("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
    }
    eprintln!("AWS endpoint: {url}{}", if started.is_some() { " (local, started by this demo)" } else { "" });
    Ok(started)
}

fn start_local_endpoint() -> DemoResult<(String, LocalEndpoint)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let setup = root.join("scripts/setup-python");
    if !setup.exists() {
        return Err(format!(
            "the local AWS endpoint is started from the source tree ({} is missing); pass --endpoint URL or --aws",
            setup.display()
        ));
    }
    eprintln!("starting the local AWS endpoint (moto; the first run installs it into .venv-test) ...");
    let out = Command::new(&setup)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", setup.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({}); is python3 with venv and pip installed?", setup.display(), out.status));
    }
    let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut child = Command::new(&python)
        .arg(root.join("scripts/moto_plus.py"))
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let endpoint = LocalEndpoint { child };
    // moto prints " * Running on http://127.0.0.1:PORT" on stderr; keep draining it afterwards.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(port) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let _ = tx.send(port.trim().to_owned());
                    sent = true;
                }
            }
        }
    });
    let port =
        rx.recv_timeout(Duration::from_secs(30)).map_err(|_| "the local AWS endpoint did not start within 30 s")?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_ok(&format!("127.0.0.1:{port}")) {
        if Instant::now() > deadline {
            return Err("the local AWS endpoint did not answer within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((url, endpoint))
}

fn http_ok(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    let req = format!("GET /moto-api/data.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    s.write_all(req.as_bytes()).is_ok() && s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// SDK configuration for one Region from the (possibly adjusted) standard environment.
async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .load()
        .await
}

struct Side {
    region: String,
    kinesis: aws_sdk_kinesis::Client,
    control: ControlTable,
    kms: Arc<MeteredKmsClient>,
    key_arn: String,
}

impl Side {
    async fn new(region: &str, table: &str) -> Self {
        let cfg = sdk_config(region).await;
        Self {
            region: region.to_owned(),
            kinesis: aws_sdk_kinesis::Client::new(&cfg),
            control: ControlTable::new(aws_sdk_dynamodb::Client::new(&cfg), table),
            kms: MeteredKmsClient::new(Arc::new(AwsSdkKmsClient::new(aws_sdk_kms::Client::new(&cfg)))),
            key_arn: String::new(),
        }
    }

    /// A caching CMM over an MRK-aware strict keyring naming only this Region's key ARN.
    fn cmm(&self, partition: &str) -> DemoResult<Arc<dyn MaterialsManager>> {
        let kms: Arc<dyn KmsClient> = self.kms.clone();
        let keyring = KmsMrkKeyring::new(&self.key_arn, kms).map_err(|e| e.to_string())?;
        let cache = Arc::new(LocalCache::new(1000).map_err(|e| e.to_string())?);
        let cmm = CachingCmm::new(Arc::new(DefaultCmm::new(keyring)), cache, Duration::from_secs(300))
            .and_then(|c| c.with_max_messages(10_000))
            .map_err(|e| e.to_string())?
            .with_partition_id(partition);
        Ok(Arc::new(cmm))
    }
}

async fn create_stream(side: &Side, stream: &str, shards: i32) -> DemoResult<()> {
    let created = side.kinesis.create_stream().stream_name(stream).shard_count(shards).send().await;
    if let Err(e) = created {
        if !e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) {
            return Err(format!(
                "CreateStream {stream} in {}: {}",
                side.region,
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            ));
        }
    }
    for _ in 0..600 {
        let d = side.kinesis.describe_stream_summary().stream_name(stream).send().await.map_err(|e| {
            format!(
                "DescribeStreamSummary {stream} in {}: {}",
                side.region,
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )
        })?;
        if d.stream_description_summary().map(|s| s.stream_status().as_str()) == Some("ACTIVE") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("stream {stream} in {} did not become ACTIVE within 5 minutes", side.region))
}

async fn create_mrk(a: &Side, b: &Side) -> DemoResult<(String, String)> {
    let kms_a = aws_sdk_kms::Client::new(&sdk_config(&a.region).await);
    let show = |e: &dyn std::fmt::Display| e.to_string();
    let out = kms_a.create_key().multi_region(true).description("esdk-pipeline demo").send().await.map_err(|e| {
        format!("KMS CreateKey in {}: {}", a.region, show(&aws_sdk_kms::error::DisplayErrorContext(&e)))
    })?;
    let meta = out.key_metadata().ok_or("CreateKey returned no metadata")?;
    let arn_a = meta.arn().ok_or("CreateKey returned no ARN")?.to_owned();
    let out = kms_a.replicate_key().key_id(meta.key_id()).replica_region(&b.region).send().await.map_err(|e| {
        format!("KMS ReplicateKey to {}: {}", b.region, show(&aws_sdk_kms::error::DisplayErrorContext(&e)))
    })?;
    let arn_b = out.replica_key_metadata().and_then(|m| m.arn()).ok_or("ReplicateKey returned no ARN")?.to_owned();
    Ok((arn_a, arn_b))
}

/// One synthetic CDC change: partition key, JSON payload, commit time.
fn cdc_record(i: usize, base: SystemTime, spacing: Duration) -> (String, Vec<u8>, SystemTime) {
    let key = 12_340_000 + i as u64;
    let ts = base + spacing * i as u32;
    let stamp = humantime::format_rfc3339_millis(ts).to_string();
    let payload = format!(
        r#"{{"Key": {key}, "CommitTimestamp": "{}", "Op": "UPSERT", "Table": "orders", "Row": {{"order_id": {key}, "customer": "c-{:05}", "amount_cents": {}, "status": "{}"}}}}"#,
        stamp.trim_end_matches('Z'),
        i % 7919,
        (i * 7_877) % 1_000_000,
        ["NEW", "PAID", "SHIPPED", "DELIVERED"][i % 4]
    );
    (key.to_string(), payload.into_bytes(), ts)
}

/// What a consumer saw, keyed by partition key (the CDC row key).
#[derive(Default)]
struct Seen {
    payloads: HashMap<String, Vec<u8>>,
    redelivered: usize,
    duplicates: usize,
    poison: usize,
    transient: usize,
    mismatched: usize,
}

impl Seen {
    fn absorb(&mut self, out: ConsumeOutcome) -> usize {
        let mut new = 0;
        self.duplicates += out.duplicates.len();
        self.poison += out.poison.len();
        self.transient += out.transient.len();
        for f in &out.poison {
            eprintln!("poison record {} in {}: {}", f.sequence_number, f.shard_id, f.error);
        }
        for d in out.delivered {
            match self.payloads.get(&d.partition_key) {
                Some(p) if p[..] == d.plaintext[..] => self.redelivered += 1,
                Some(_) => self.mismatched += 1,
                None => {
                    self.payloads.insert(d.partition_key.clone(), d.plaintext.to_vec());
                    new += 1;
                }
            }
        }
        new
    }
}

async fn consume_loop(
    consumer: Consumer,
    client: aws_sdk_kinesis::Client,
    stream: String,
    seen: Arc<Mutex<Seen>>,
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
) -> DemoResult<()> {
    let mut reader =
        StreamReader::open(client, &stream, StartPosition::TrimHorizon).await.map_err(|e| e.to_string())?;
    let mut retry: Vec<esdk_kinesis::SourceRecord> = Vec::new();
    loop {
        let mut records = std::mem::take(&mut retry);
        match reader.poll().await {
            Ok(r) => records.extend(r),
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(format!("consumer: {e}")),
        }
        if records.is_empty() {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let out = consumer.process(&records).await;
        let again: Vec<String> = out.transient.iter().map(|f| f.sequence_number.clone()).collect();
        retry = records.into_iter().filter(|r| again.contains(&r.sequence_number)).collect();
        let new = seen.lock().unwrap_or_else(|p| p.into_inner()).absorb(out);
        bar.inc(new as u64);
    }
}

async fn replicate_loop(
    replicator: Arc<Replicator>,
    source: aws_sdk_kinesis::Client,
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
) -> DemoResult<()> {
    replicator
        .run(source, &stop, Duration::from_millis(100), |o| bar.inc(o.replicated as u64))
        .await
        .map_err(|e| format!("replicator: {e}"))
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

async fn run(args: Args) -> DemoResult<bool> {
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut a = Side::new(&args.region_a, &args.table).await;
    let mut b = Side::new(&args.region_b, &args.table).await;

    // Set-up: key, streams, control tables.
    let (arn_a, arn_b) = match (&args.key_arn_a, &args.key_arn_b) {
        (Some(x), Some(y)) => (x.clone(), y.clone()),
        _ => create_mrk(&a, &b).await?,
    };
    a.key_arn = arn_a;
    b.key_arn = arn_b;
    eprintln!("multi-Region key: {} (replica {})", a.key_arn, b.key_arn);
    for side in [&a, &b] {
        create_stream(side, &args.stream, args.shards).await?;
        side.control.create_if_missing().await.map_err(|e| e.to_string())?;
        side.control.set_active_region(&a.region).await.map_err(|e| e.to_string())?;
    }
    eprintln!(
        "streams {0:?} and control tables {1:?} ready in {2} and {3}; active Region {2}",
        args.stream, args.table, a.region, b.region
    );

    let codec = |side: &Side| -> DemoResult<RecordCodec> {
        RecordCodec::builder(side.cmm(&format!("producer-{}", side.region))?, &args.stream, &side.region)
            .commit_time(CommitTimeInContext::Window(args.commit_window))
            .build()
            .map_err(|e| e.to_string())
    };
    let producer_a = Producer::new(a.kinesis.clone(), &args.stream, codec(&a)?);
    let expected_ec: EncryptionContext = [(EC_STREAM, args.stream.as_str())].into_iter().collect();
    let consumer = |side: &Side| -> DemoResult<Consumer> {
        Ok(Consumer::new(
            Client::builder().build().map_err(|e| e.to_string())?,
            side.cmm(&format!("consumer-{}", side.region))?,
        )
        .expect_context(expected_ec.clone()))
    };
    let rep_ab = Arc::new(
        Replicator::new(&a.region, &args.stream, b.kinesis.clone(), a.control.clone(), b.control.clone())
            .with_allowed_keys([a.key_arn.as_str()])
            .map_err(|e| e.to_string())?,
    );
    let rep_ba = Arc::new(
        Replicator::new(&b.region, &args.stream, a.kinesis.clone(), b.control.clone(), a.control.clone())
            .with_allowed_keys([b.key_arn.as_str()])
            .map_err(|e| e.to_string())?,
    );

    let n = args.records;
    let m = n * args.failover_percent / 100;
    let base = humantime::parse_rfc3339("2022-07-18T20:00:00Z").map_err(|e| e.to_string())?;
    let originals: Vec<(String, Vec<u8>, SystemTime)> =
        (0..n + m).map(|i| cdc_record(i, base, args.commit_spacing)).collect();
    let expected = Arc::new(AtomicUsize::new(n));

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

    let tasks = vec![
        tokio::spawn(replicate_loop(rep_ab.clone(), a.kinesis.clone(), rep_ab_bar.clone(), stop.clone())),
        tokio::spawn(replicate_loop(rep_ba.clone(), b.kinesis.clone(), rep_ba_bar.clone(), stop.clone())),
        tokio::spawn(consume_loop(
            consumer(&a)?,
            a.kinesis.clone(),
            args.stream.clone(),
            seen_a.clone(),
            cons_a_bar.clone(),
            stop.clone(),
        )),
        tokio::spawn(consume_loop(
            consumer(&b)?,
            b.kinesis.clone(),
            args.stream.clone(),
            seen_b.clone(),
            cons_b_bar.clone(),
            stop.clone(),
        )),
    ];

    // Phase 1: produce in A.
    let t0 = Instant::now();
    let mut put_failed = 0usize;
    let (mut plaintext_bytes, mut record_bytes, mut put_records) = (0u64, 0u64, 0u64);
    for chunk in originals[..n].chunks(500) {
        let report = producer_a.put(chunk.iter().map(|(k, p, t)| (k.as_str(), p.as_slice(), Some(*t)))).await;
        for f in &report.failed {
            eprintln!("not put: record {} ({}): {}", f.index, f.partition_key, f.error);
        }
        put_failed += report.failed.len();
        plaintext_bytes += report.plaintext_bytes;
        record_bytes += report.record_bytes;
        put_records += report.put.len() as u64;
        produced_bar.inc(report.put.len() as u64);
    }
    let produce_secs = t0.elapsed().as_secs_f64();
    let metrics_ab = rep_ab.metrics();
    let settled = |seen: &Arc<Mutex<Seen>>, want: usize| seen.lock().map(|s| s.payloads.len() >= want).unwrap_or(false);
    let wait_all = wait_until(deadline, "replication and both consumers", || {
        metrics_ab.records_replicated.load(Ordering::Relaxed) as usize >= n - put_failed
            && settled(&seen_a, n - put_failed)
            && settled(&seen_b, n - put_failed)
    })
    .await;
    let phase1_secs = t0.elapsed().as_secs_f64();

    // Phase 2: failover to B; the producer resumes there from the replication checkpoint.
    let mut replayed = 0usize;
    if wait_all.is_ok() && m > 0 {
        for side in [&a, &b] {
            side.control.set_active_region(&b.region).await.map_err(|e| e.to_string())?;
        }
        let resume = b.control.resume_commit_time(&args.stream, &a.region).await.map_err(|e| e.to_string())?;
        let replay: Vec<&(String, Vec<u8>, SystemTime)> = match resume {
            Some(t) => originals[..n].iter().filter(|r| r.2 >= t).collect(),
            None => originals[..n].iter().collect(),
        };
        replayed = replay.len();
        bars.suspend(|| {
            eprintln!(
                "failover: active Region is now {}; the producer resumes there from the checkpoint commit time {} ({} records re-sent), then {} new records",
                b.region,
                resume.map_or("<none>".into(), |t| humantime::format_rfc3339_millis(t).to_string()),
                replayed,
                m
            )
        });
        expected.store(n + m, Ordering::Relaxed);
        for b_ in [&cons_a_bar, &cons_b_bar] {
            b_.set_length((n + m) as u64);
        }
        rep_ba_bar.set_length((replayed + m) as u64);
        let producer_b = Producer::new(b.kinesis.clone(), &args.stream, codec(&b)?);
        let batch: Vec<(&str, &[u8], Option<SystemTime>)> =
            replay.into_iter().chain(&originals[n..]).map(|(k, p, t)| (k.as_str(), p.as_slice(), Some(*t))).collect();
        for chunk in batch.chunks(500) {
            let report = producer_b.put(chunk.iter().copied()).await;
            for f in &report.failed {
                eprintln!("not put in {}: record {} ({}): {}", b.region, f.index, f.partition_key, f.error);
            }
            put_failed += report.failed.len();
        }
    }
    let total = expected.load(Ordering::Relaxed);
    let metrics_ba = rep_ba.metrics();
    let wait_all = match wait_all {
        Ok(()) => {
            wait_until(deadline, "failover replication and consumers", || {
                settled(&seen_a, total - put_failed) && settled(&seen_b, total - put_failed)
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
    let (ka, kb) = (a.kms.counts(), b.kms.counts());
    let seen_a = seen_a.lock().unwrap_or_else(|p| p.into_inner());
    let seen_b = seen_b.lock().unwrap_or_else(|p| p.into_inner());
    println!("records produced in {}: {n} in {produce_secs:.2} s = {:.0} records/s (end to end, both Regions decrypted: {phase1_secs:.2} s = {:.0} records/s)", a.region, n as f64 / produce_secs, n as f64 / phase1_secs);
    if put_records > 0 {
        println!(
            "bytes per record: {:.0} plaintext, {:.0} encrypted = {:.0} bytes of overhead per record",
            plaintext_bytes as f64 / put_records as f64,
            record_bytes as f64 / put_records as f64,
            (record_bytes - plaintext_bytes) as f64 / put_records as f64
        );
    }
    println!(
        "replication {}→{}: {} records, {} refused, lag last {} ms / max {} ms",
        a.region,
        b.region,
        metrics_ab.records_replicated.load(Ordering::Relaxed),
        metrics_ab.records_refused.load(Ordering::Relaxed),
        metrics_ab.last_lag_ms.load(Ordering::Relaxed),
        metrics_ab.max_lag_ms.load(Ordering::Relaxed)
    );
    println!(
        "replication {}→{}: {} records, {} batches skipped while {} was not active, {} replicas skipped (loop prevention)",
        b.region,
        a.region,
        metrics_ba.records_replicated.load(Ordering::Relaxed),
        metrics_ba.batches_skipped_inactive.load(Ordering::Relaxed),
        b.region,
        metrics_ba.records_skipped_foreign.load(Ordering::Relaxed) + metrics_ab.records_skipped_foreign.load(Ordering::Relaxed)
    );
    for (side, seen) in [(&a, &seen_a), (&b, &seen_b)] {
        println!(
            "consumer {}: {} records decrypted, {} duplicate messages dropped, {} re-sent records recognised, {} poison, {} transient",
            side.region,
            seen.payloads.len(),
            seen.duplicates,
            seen.redelivered,
            seen.poison,
            seen.transient
        );
    }
    println!(
        "KMS calls: {} GenerateDataKey {} Decrypt {} | {} GenerateDataKey {} Decrypt {}",
        a.region, ka.generate_data_key, ka.decrypt, b.region, kb.generate_data_key, kb.decrypt
    );
    let mut ok = wait_all.is_ok() && put_failed == 0;
    if let Err(e) = wait_all {
        eprintln!("error: {e}");
    }
    for (side, seen) in [(&a, &seen_a), (&b, &seen_b)] {
        let missing = originals[..total].iter().filter(|(k, p, _)| seen.payloads.get(k) != Some(p)).count();
        if missing > 0 || seen.mismatched > 0 || seen.poison > 0 {
            ok = false;
            println!(
                "check FAILED in {}: {missing} records missing or different, {} mismatched",
                side.region, seen.mismatched
            );
        }
    }
    if ok {
        println!(
            "check: all {total} records decrypted to their originals in {} and {} (failover replayed {replayed}); {:.1} s in all",
            a.region,
            b.region,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ok)
}
