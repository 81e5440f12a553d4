//! `esdk kinesis init|status|failover` driven as an operator would, against the local endpoint:
//! what init creates, the status JSON, a dry run, a failover with one Region unreachable and its
//! completion once the Region is back, and the `resume-from=` line producers replay from.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use esdk_kinesis::lambda::LambdaReplicator;
use esdk_testkit::aws::Endpoint;
use esdk_testkit::pipeline::{changes, pipeline, produce_all, replicator, unique};
use serde_json::Value;

fn esdk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_esdk")).args(args).output().expect("run esdk")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "esdk failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(stream: &str, table: &str, regions: &str) -> Value {
    serde_json::from_str(&ok(&esdk(&["kinesis", "status", "--stream", stream, "--table", table, "--regions", regions])))
        .unwrap()
}

#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn init_creates_what_is_missing_and_says_so() {
    let _env = Endpoint::from_env();
    let (stream, table) = (unique("ops-init"), unique("ctl"));
    let regions = "sa-east-1,ap-southeast-3";
    let args =
        ["kinesis", "init", "--stream", &stream, "--table", &table, "--regions", regions, "--active", "sa-east-1"];
    let first = ok(&esdk(&args));
    assert_eq!(first.matches("created control table").count(), 2, "{first}");
    assert_eq!(first.matches("created the active-Region flag: sa-east-1 at epoch 1").count(), 2, "{first}");
    let again = ok(&esdk(&args));
    assert_eq!(again.matches("control table exists").count(), 2, "{again}");
    assert!(!again.contains("created"), "{again}");
    let s = status(&stream, &table, regions);
    assert_eq!(s["consistent"], true, "{s}");
    for r in s["regions"].as_array().unwrap() {
        assert_eq!(r["active"]["region"], "sa-east-1");
        assert_eq!(r["active"]["epoch"], 1);
    }
    // Misuse is refused with the reason.
    let bad = esdk(&[
        "kinesis",
        "init",
        "--stream",
        &stream,
        "--table",
        &table,
        "--regions",
        "sa-east-1",
        "--active",
        "sa-east-1",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("at least two distinct Regions"));
}

#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn failover_is_fenced_survives_an_unreachable_region_and_prints_the_resume_point() {
    let env = Endpoint::from_env();
    let (ra, rb) = ("ap-southeast-2", "eu-west-2");
    let regions = format!("{ra},{rb}");
    let (stream, table) = (unique("ops-failover"), unique("ctl"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = rt.block_on(pipeline(&env, ra, rb, &stream, &table, 2));
    // Replicate what A produced, so B's table holds checkpoints and watermarks for A's shards.
    let records = rt.block_on(async {
        produce_all(&a.producer(&stream), &changes(20, 5), Instant::now() + Duration::from_secs(120)).await;
        a.read_all(&stream).await
    });
    let lambda = LambdaReplicator::new(replicator(&a, &b, &stream).build().unwrap(), a.kinesis.clone());
    let batch = rt.block_on(lambda.handle(&records));
    assert!(batch.failures.is_empty() && batch.error.is_none(), "{batch:?}");
    let expected = rt
        .block_on(b.control.resume_point(&stream, ra, Duration::from_secs(60)))
        .unwrap()
        .from
        .expect("every shard has a watermark");
    let expected = format!("resume-from={}", humantime::format_rfc3339_millis(expected));

    let s = status(&stream, &table, &regions);
    let into_b = &s["regions"][1]["replication_into"][0];
    assert_eq!(into_b["source_region"], ra);
    assert_eq!(into_b["shards"].as_array().unwrap().len(), 2, "{s}");
    for shard in into_b["shards"].as_array().unwrap() {
        assert!(shard["sequence_number"].is_string() && shard["watermark"].is_string(), "{shard}");
        assert!(shard["lag_seconds"].as_f64().unwrap() >= 0.0);
    }

    let failover = |extra: &[&str]| {
        let mut args =
            vec!["kinesis", "failover", "--stream", &stream, "--table", &table, "--regions", &regions, "--to", rb];
        args.extend_from_slice(extra);
        esdk(&args)
    };
    // A dry run prints the resume point and changes nothing.
    let dry = ok(&failover(&["--dry-run"]));
    assert_eq!(dry.lines().last().unwrap(), expected, "{dry}");
    assert!(dry.contains("(dry run)"), "{dry}");
    assert_eq!(status(&stream, &table, &regions)["regions"][1]["active"]["region"], ra);

    // A is unreachable: B is flipped and read back, A is reported and left.
    rt.block_on(env.inject_fault_status("DynamoDB_20120810.GetItem", ra, 50, 500, "InternalServerError"));
    let partial = failover(&[]);
    rt.block_on(env.clear_faults_in(ra));
    let out = ok(&partial);
    let stderr = String::from_utf8_lossy(&partial.stderr);
    assert!(stderr.contains(&format!("{ra}: unreachable")) && stderr.contains("run this failover again"), "{stderr}");
    assert!(out.contains(&format!("{rb}: {ra} (epoch 1) -> {rb} (epoch 2), read back")), "{out}");
    assert_eq!(out.lines().last().unwrap(), expected, "{out}");
    let s = status(&stream, &table, &regions);
    assert_eq!(s["consistent"], false, "the Regions disagree until A is flipped: {s}");

    // A is back: running it again completes it.
    let out = ok(&failover(&[]));
    assert!(out.contains(&format!("{ra}: {ra} (epoch 1) -> {rb} (epoch 2), read back")), "{out}");
    assert!(out.contains(&format!("{rb}: already {rb} at epoch 2")), "{out}");
    let s = status(&stream, &table, &regions);
    assert_eq!(s["consistent"], true, "{s}");
    assert_eq!(s["regions"][0]["active"]["epoch"], 2);

    // A Region outside the list, or a target that cannot be read, is refused.
    let bad = esdk(&[
        "kinesis",
        "failover",
        "--stream",
        &stream,
        "--table",
        &table,
        "--regions",
        &regions,
        "--to",
        "us-east-1",
    ]);
    assert!(!bad.status.success());
    rt.block_on(env.inject_fault_status("DynamoDB_20120810.GetItem", rb, 50, 500, "InternalServerError"));
    let down = failover(&[]);
    rt.block_on(env.clear_faults_in(rb));
    assert!(!down.status.success());
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.starts_with("esdk: error: ") && stderr.contains("GetItem"), "{stderr}");
}
