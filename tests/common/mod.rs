//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(feature = "kms")]
pub mod aws;

/// The official vectors' directory (`ESDK_TEST_VECTORS`, default `../shared/vectors`), or `None`
/// after [`missing`] when it is not there.
pub fn vectors_dir() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("ESDK_TEST_VECTORS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"));
    if dir.join("manifest.json").is_file() {
        return Some(dir);
    }
    missing(&format!(
        "test vectors not found at {} (set ESDK_TEST_VECTORS to the directory holding manifest.json)",
        dir.display()
    ));
    None
}

/// Fails under `CI=true` (the test script must provide what the test needs); elsewhere prints a
/// visible notice that the test did not run.
pub fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}");
    }
    eprintln!("NOTICE: NOT RUN: {what}");
}

/// The Python interpreter with the official ESDK (`ESDK_INTEROP_PYTHON`, set by `scripts/test`).
pub fn interop_python() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("ESDK_INTEROP_PYTHON") {
        return Some(p.into());
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    if venv.is_file() {
        return Some(venv);
    }
    missing("the official Python ESDK is not installed (run scripts/test, or set ESDK_INTEROP_PYTHON)");
    None
}

/// Runs `interop/esdk_python.py` with `args`; panics with its output when it fails.
pub fn run_python(python: &std::path::Path, args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/esdk_python.py");
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
