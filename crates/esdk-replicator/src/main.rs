//! `esdk-replicator`: copies the records of a Kinesis stream in one Region to the same stream in
//! another, byte for byte, without any key (it reads only public header fields).
#![forbid(unsafe_code)]

mod config;
mod event;
mod lambda;
mod metrics;
mod service;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use esdk_kinesis::{ControlTable, DeadLetterQueue, ReaderConfig, Replicator};

#[cfg(test)]
mod tests {
    #[test]
    fn queue_regions() {
        assert_eq!(super::queue_region("https://sqs.eu-west-1.amazonaws.com/111122223333/dlq"), Some("eu-west-1"));
        assert_eq!(super::queue_region("http://127.0.0.1:4566/123456789012/dlq"), None);
        assert_eq!(super::queue_region("not a url"), None);
    }
}

#[derive(Parser)]
#[command(
    name = "esdk-replicator",
    version,
    about = "Crypto-blind cross-Region replicator for Kinesis streams of AWS Encryption SDK records",
    long_about = "Copies every record of a Kinesis stream in the source Region to the stream of the same \
name in the destination Region, unchanged and in order per partition key, while the DynamoDB control \
table names the source Region as active. It needs no KMS permission: it reads only the public header \
fields of each record (origin Region, commit time, the key ARNs of the encrypted data keys), never \
forwards a record back to its origin Region, and checkpoints each shard in the destination Region's \
control table after the records are in the destination stream."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Poll the source stream and replicate until interrupted (Ctrl-C / SIGTERM).
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Stream name (the same in both Regions).
    #[arg(long)]
    stream: String,
    /// Source Region (where the stream is read).
    #[arg(long = "from", value_name = "REGION")]
    from: String,
    /// Destination Region (where records are written).
    #[arg(long = "to", value_name = "REGION")]
    to: String,
    /// DynamoDB control table (active Region, checkpoints), present in both Regions.
    #[arg(long = "control-table", value_name = "TABLE")]
    control_table: String,
    /// Only forward records whose every KMS data key is wrapped under one of these key ARNs
    /// (multi-Region replicas match each other). Repeatable.
    #[arg(long = "allowed-key", value_name = "ARN")]
    allowed_keys: Vec<String>,
    /// SQS queue for records that must not be forwarded (without one, a refused record stops
    /// its shard until it is allowed or a queue is configured).
    #[arg(long = "dead-letter-queue-url", value_name = "URL")]
    dead_letter_queue_url: Option<String>,
    /// Least time between two reads of one shard (Kinesis allows 5 per second per shard, shared
    /// by every consumer of the stream).
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Wait after a read that found nothing new.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    idle_interval: Duration,
    /// How long the ownership lease lasts unless renewed (renewed every third of it); a standby
    /// takes over at most this long after the owner dies.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    lease_ttl: Duration,
    /// This instance's name in the lease (default: host name, process id and start time).
    #[arg(long, value_name = "ID")]
    owner: Option<String>,
    /// Answer `GET /live` and `GET /ready` on this address (e.g. 0.0.0.0:8080).
    #[arg(long, value_name = "ADDR")]
    health_addr: Option<std::net::SocketAddr>,
    /// CloudWatch namespace of the metrics (EMF on stdout, PutMetricData in the destination).
    #[arg(long, default_value = metrics::DEFAULT_NAMESPACE)]
    metrics_namespace: String,
    /// Least time between two PutMetricData calls to the destination (each carries every batch
    /// since the last; the EMF lines on stdout are written per batch).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    metrics_interval: Duration,
}

fn main() -> ExitCode {
    // Lambda sets AWS_LAMBDA_RUNTIME_API; anywhere else this is a command-line program.
    let lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let cli = if lambda { None } else { Some(Cli::parse()) };
    // Logs go to stderr; stdout carries only the EMF metric lines.
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_ansi(!lambda).init();
    // Lambda runs one invocation at a time on a share of a vCPU: one thread, no wake-ups of
    // idle workers. The long-running mode reads many shards at once.
    let mut builder = if lambda {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("esdk-replicator: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli {
        None => match config::LambdaConfig::from_env(|k| std::env::var(k).ok()) {
            Ok(config) => runtime.block_on(lambda::serve(config)),
            Err(e) => Err(format!("bad configuration: {e}")),
        },
        Some(Cli { command: Command::Run(args) }) => runtime.block_on(run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esdk-replicator: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await
}

/// The Region of an SQS queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`);
/// `None` for other shapes (a local endpoint), where the caller's default applies.
fn queue_region(url: &str) -> Option<&str> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let region = host.strip_prefix("sqs.")?.split('.').next()?;
    (!region.is_empty()).then_some(region)
}

/// The dead-letter queue named by `url`, with a client of the queue's own Region (the template
/// creates it beside the function); `default_region` when the URL does not say.
async fn dead_letter_queue(url: &str, default_region: &aws_config::SdkConfig) -> DeadLetterQueue {
    let client = match queue_region(url) {
        Some(region) if Some(region) != default_region.region().map(|r| r.as_ref()) => {
            aws_sdk_sqs::Client::new(&sdk_config(region).await)
        }
        _ => aws_sdk_sqs::Client::new(default_region),
    };
    DeadLetterQueue::new(client, url)
}

/// The AWS configuration of two Regions, loaded once (credentials and endpoints shared).
async fn sdk_configs(a: &str, b: &str) -> (aws_config::SdkConfig, aws_config::SdkConfig) {
    let first = sdk_config(a).await;
    let second = first.to_builder().region(aws_config::Region::new(b.to_owned())).build();
    (first, second)
}

fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{host}-{}-{started}", std::process::id())
}

async fn run(args: RunArgs) -> Result<(), String> {
    if args.lease_ttl < Duration::from_secs(3) {
        return Err(format!(
            "--lease-ttl {:?} is too short (at least 3s: it is renewed every third of it)",
            args.lease_ttl
        ));
    }
    let (src, dst) = sdk_configs(&args.from, &args.to).await;
    let checkpoints = ControlTable::new(aws_sdk_dynamodb::Client::new(&dst), &args.control_table);
    let mut builder = Replicator::builder(&args.from, &args.stream)
        .destination(aws_sdk_kinesis::Client::new(&dst), None)
        .flag_table(ControlTable::new(aws_sdk_dynamodb::Client::new(&src), &args.control_table))
        .checkpoint_table(checkpoints.clone())
        .reader_config(ReaderConfig::default().intervals(args.poll_interval, args.idle_interval));
    if let Some(url) = &args.dead_letter_queue_url {
        builder = builder.dead_letter_queue(dead_letter_queue(url, &dst).await);
    }
    if !args.allowed_keys.is_empty() {
        builder = builder.allowed_keys(&args.allowed_keys).map_err(|e| format!("--allowed-key: {e}"))?;
    }
    let replicator = builder.build().map_err(|e| e.to_string())?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: finishing the batch in flight and its checkpoints");
        flag.store(true, Ordering::Relaxed);
    });
    let owner = args.owner.clone().unwrap_or_else(default_owner);
    tracing::info!(stream = %args.stream, from = %args.from, to = %args.to, owner = %owner, "replicator starting");
    let metrics = metrics::Metrics::new(
        &args.metrics_namespace,
        &args.stream,
        &args.from,
        &args.to,
        Some(aws_sdk_cloudwatch::Client::new(&dst)),
    )
    .flush_interval(args.metrics_interval);
    service::Service {
        replicator,
        source: aws_sdk_kinesis::Client::new(&src),
        lease_table: checkpoints,
        owner,
        lease_ttl: args.lease_ttl,
        metrics: Arc::new(metrics),
        health_addr: args.health_addr,
    }
    .run(shutdown)
    .await
}
