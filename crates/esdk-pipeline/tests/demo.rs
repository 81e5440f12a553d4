//! The demo binary itself against the local AWS endpoint (started by `scripts/test`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use esdk_testkit::aws::Endpoint;

/// A name no other test (or earlier run against the same endpoint) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn demo_pipeline_runs_end_to_end_against_the_endpoint() {
    let env = Endpoint::from_env();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esdk-pipeline"))
        .args([
            "--records",
            "1500",
            "--endpoint",
            env.url(),
            "--region-a",
            "eu-central-2",
            "--region-b",
            "ap-southeast-3",
        ])
        .args(["--stream", &unique("demo"), "--table", &unique("demo-ctl"), "--timeout", "3m"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("check: all 1650 records decrypted to their originals"), "{stdout}");
    let kms_line = stdout.lines().find(|l| l.starts_with("KMS calls")).unwrap();
    let counts: Vec<u64> = kms_line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(counts.len(), 4, "{kms_line}");
    assert!(counts.iter().all(|&c| c <= 20), "{kms_line}");
    // Each producer fetches at most one data key per commit window it encrypts.
    let windows_line = stdout.lines().find(|l| l.starts_with("commit windows encrypted")).unwrap();
    let windows: Vec<u64> = windows_line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(windows.len(), 2, "{windows_line}");
    assert!(counts[0] <= windows[0] && counts[2] <= windows[1], "{kms_line}\n{windows_line}");
}
