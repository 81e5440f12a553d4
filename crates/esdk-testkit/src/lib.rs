//! Helpers shared by the workspace's integration tests (not published): the official vectors,
//! the local AWS endpoint started by `scripts/test`, the official Python ESDK, and a counting
//! keyring.
//!
//! A prerequisite that is missing fails the test with how to get it: tests that need the local
//! endpoint or Python are `#[ignore = "…"]` and run by `scripts/test` (`--include-ignored`), which
//! provides both.
#![forbid(unsafe_code)]
#![allow(missing_docs)]

pub mod aws;
pub mod lambda_api;
pub mod pipeline;

use std::path::{Path, PathBuf};

/// A client writing `suite` on `backend`, with the commitment policy that suite needs (require
/// for committing suites, forbid-encrypt for the others), as interop tests over every suite use.
pub fn client_for(suite: esdk::AlgorithmSuite, backend: esdk::Backend) -> esdk::Client {
    let policy = if suite.is_committing() {
        esdk::CommitmentPolicy::RequireEncryptRequireDecrypt
    } else {
        esdk::CommitmentPolicy::ForbidEncryptAllowDecrypt
    };
    esdk::Client::builder().suite(suite).commitment_policy(policy).backend(backend).build().expect("client")
}

/// An encryption context as the JSON object the Python interop drivers read (`context.json`).
pub fn context_json(context: &esdk::EncryptionContext) -> String {
    let map: std::collections::BTreeMap<&str, &str> = context.iter().collect();
    serde_json::to_string(&map).expect("context JSON")
}

/// The repository root (this crate lives in `crates/esdk-testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The official vectors' directory (`ESDK_TEST_VECTORS`, default `../shared/vectors` beside the
/// repository).
pub fn vectors_dir() -> PathBuf {
    let dir = std::env::var_os("ESDK_TEST_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/vectors"));
    if !dir.join("manifest.json").is_file() {
        missing(&format!(
            "the official test vectors are not at {} (put shared/ beside the repository or set ESDK_TEST_VECTORS \
             to the directory holding manifest.json)",
            dir.display()
        ));
    }
    dir
}

/// Fails the test: a prerequisite is missing. Says how to get it.
pub fn missing(what: &str) -> ! {
    panic!("prerequisite missing: {what}; `scripts/test` provides everything the tests need")
}

/// The Python interpreter with the official ESDK (`ESDK_INTEROP_PYTHON`, set by `scripts/test`).
pub fn interop_python() -> PathBuf {
    if let Some(p) = std::env::var_os("ESDK_INTEROP_PYTHON") {
        return p.into();
    }
    let venv = repo_root().join(".venv-test/bin/python");
    if venv.is_file() {
        return venv;
    }
    missing("the official Python ESDK is not installed (run scripts/test, or set ESDK_INTEROP_PYTHON)")
}

/// A memory figure of a process from `/proc/<pid>/status`, in KiB: `field` is `VmRSS` (now) or
/// `VmHWM` (peak); `pid` may be `self`. `None` where there is no `/proc` (not Linux) or the
/// process has exited, so callers say that nothing was measured instead of passing on 0.
pub fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `cmd` with `stdin` fed from another thread (so a full stdout pipe cannot deadlock the
/// caller), capturing stdout and stderr.
pub fn output_with_stdin(cmd: &mut std::process::Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for the child");
    let _ = feeder.join();
    out
}

/// Runs `interop/esdk_python.py` with `args`; panics with its output when it fails.
pub fn run_python(python: &Path, args: &[&str]) -> String {
    run_python_script(python, "esdk_python.py", args)
}

/// Runs the driver `interop/<script>` with `args`; panics with its output when it fails.
pub fn run_python_script(python: &Path, script: &str, args: &[&str]) -> String {
    let script = repo_root().join("interop").join(script);
    let out =
        std::process::Command::new(python).arg(script).args(args).output().expect("run the Python interop driver");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "python {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A keyring wrapper that counts calls and can delay or fail them.
pub mod counting {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use esdk::materials::{DecryptionMaterials, EncryptionMaterials};
    use esdk::{EncryptedDataKey, Keyring};

    #[derive(Debug)]
    pub struct CountingKeyring {
        inner: Arc<dyn Keyring>,
        pub encrypts: AtomicUsize,
        pub decrypts: AtomicUsize,
        /// Fail this many calls first (each failure counts as a call).
        pub fail_first: AtomicUsize,
        pub delay: Duration,
    }

    impl CountingKeyring {
        pub fn new(inner: Arc<dyn Keyring>) -> Arc<Self> {
            Self::with(inner, 0, Duration::ZERO)
        }

        pub fn with(inner: Arc<dyn Keyring>, fail_first: usize, delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                inner,
                encrypts: AtomicUsize::new(0),
                decrypts: AtomicUsize::new(0),
                fail_first: AtomicUsize::new(fail_first),
                delay,
            })
        }

        pub fn encrypts(&self) -> usize {
            self.encrypts.load(Ordering::SeqCst)
        }

        pub fn decrypts(&self) -> usize {
            self.decrypts.load(Ordering::SeqCst)
        }

        async fn gate(&self) -> esdk::Result<()> {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let failing =
                self.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            if failing {
                return Err(esdk::Error::Keyring {
                    action: "wrap the data key",
                    reason: "injected failure".into(),
                    retryable: true,
                });
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Keyring for CountingKeyring {
        async fn on_encrypt(&self, materials: EncryptionMaterials) -> esdk::Result<EncryptionMaterials> {
            self.encrypts.fetch_add(1, Ordering::SeqCst);
            self.gate().await?;
            self.inner.on_encrypt(materials).await
        }

        async fn on_decrypt(
            &self,
            materials: DecryptionMaterials,
            edks: &[EncryptedDataKey],
        ) -> esdk::Result<DecryptionMaterials> {
            self.decrypts.fetch_add(1, Ordering::SeqCst);
            self.gate().await?;
            self.inner.on_decrypt(materials, edks).await
        }
    }
}
