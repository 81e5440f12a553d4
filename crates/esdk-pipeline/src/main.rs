//! `esdk-pipeline`: the demo CDC pipeline. Producer → stream in Region A → crypto-blind
//! replicator → the same stream in Region B → consumers in both Regions, then a fenced failover
//! to B, a replay from the replication watermark, and new records produced in B.
//!
//! By default it starts the local AWS endpoint of this repository (moto with
//! `scripts/moto_plus.py`, installed into `.venv-test` on first use) and stops it at the end;
//! `--endpoint URL` uses another endpoint, `--aws` the standard AWS environment unchanged.
#![forbid(unsafe_code)]

mod endpoint;
mod report;
mod run;
mod setup;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "esdk-pipeline",
    version,
    about = "Demo: encrypted CDC records replicated across Regions through Kinesis"
)]
pub struct Args {
    /// Synthetic CDC records to produce in Region A.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    /// Records produced in Region B after the failover, as a percentage of --records (0: no failover).
    #[arg(long, default_value_t = 10)]
    failover_percent: usize,
    /// Distinct row keys (each updated about records/keys times; per-key order is checked).
    #[arg(long)]
    keys: Option<usize>,
    /// Use this AWS endpoint (e.g. an already running local one) instead of starting one.
    #[arg(long, conflicts_with = "aws")]
    endpoint: Option<String>,
    /// Use the standard AWS environment (credentials, endpoints) as it is. Creates real resources.
    #[arg(long)]
    aws: bool,
    /// One ESDK message per CDC record instead of KPL aggregates of many.
    #[arg(long)]
    no_aggregate: bool,
    /// Make the local endpoint fail this fraction of the calls of every API the pipeline uses
    /// (throttling, 5xx, single PutRecords entries), e.g. 0.1.
    #[arg(long, default_value_t = 0.0)]
    chaos: f64,
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
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    commit_window: Duration,
    /// Commit-time spacing of the synthetic records.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    commit_spacing: Duration,
    /// Commit-time disorder allowed within a shard: subtracted from the replication watermark
    /// to get the failover resume point. The demo's producer writes in commit order, so it
    /// needs none; `esdk kinesis failover` defaults to 60 s.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    resume_margin: Duration,
    /// Give up after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub type DemoResult<T> = Result<T, String>;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.records == 0 {
        eprintln!("error: --records must be at least 1");
        return ExitCode::from(2);
    }
    if !(0.0..1.0).contains(&args.chaos) {
        eprintln!("error: --chaos must be at least 0 and below 1");
        return ExitCode::from(2);
    }
    // The endpoint is chosen (and started) before any thread exists, so the environment it
    // sets is seen by every SDK client.
    let (url, _local) = match endpoint::choose(args.endpoint.as_deref(), args.aws) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.chaos > 0.0 && url.is_none() {
        eprintln!("error: --chaos needs the local endpoint (it injects faults there)");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(args, url)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
