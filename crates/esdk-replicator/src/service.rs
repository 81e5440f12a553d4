//! Long-running mode (ECS, EC2): one active owner per stream and source Region through a lease
//! in the destination Region's control table. The owner renews it every third of its TTL and
//! stops replicating (after the batch in flight) as soon as it cannot confirm it still holds
//! it; standbys poll and take over when it expires or is released. SIGTERM finishes the batch in
//! flight, writes its checkpoints and releases the lease. `/live` and `/ready` answer on the
//! health port.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use esdk_kinesis::{ControlTable, Replicator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::metrics::{BatchMetrics, Metrics};

/// The instance's role, as `/ready` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Setting up.
    Starting = 0,
    /// Another instance holds the lease; this one waits.
    Standby = 1,
    /// Holds the lease and replicates.
    Active = 2,
    /// Shutting down.
    Stopping = 3,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::Active => "active",
            Role::Stopping => "stopping",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Role::Standby,
            2 => Role::Active,
            3 => Role::Stopping,
            _ => Role::Starting,
        }
    }
}

/// What the health endpoint reports.
pub struct Health {
    role: AtomicU8,
    /// The last lease call reached the control table.
    table_ok: AtomicBool,
    owner: String,
    stream: String,
}

impl Health {
    fn set(&self, role: Role) {
        let before = Role::from_u8(self.role.swap(role as u8, Ordering::Relaxed));
        if before != role {
            tracing::info!(owner = %self.owner, stream = %self.stream, role = role.name(), "role");
        }
    }

    fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Relaxed))
    }

    /// Ready: standing by or replicating, and the control table answers.
    fn ready(&self) -> bool {
        matches!(self.role(), Role::Standby | Role::Active) && self.table_ok.load(Ordering::Relaxed)
    }
}

/// Settings of the long-running mode.
pub struct Service {
    pub replicator: Replicator,
    pub source: aws_sdk_kinesis::Client,
    /// Where the lease lives (the destination Region's control table).
    pub lease_table: ControlTable,
    pub owner: String,
    pub lease_ttl: Duration,
    pub metrics: Arc<Metrics>,
    pub health_addr: Option<std::net::SocketAddr>,
}

impl Service {
    /// Runs until `shutdown` is set; returns an error only for a permanent failure.
    pub async fn run(self, shutdown: Arc<AtomicBool>) -> Result<(), String> {
        let health = Arc::new(Health {
            role: AtomicU8::new(Role::Starting as u8),
            table_ok: AtomicBool::new(false),
            owner: self.owner.clone(),
            stream: self.replicator.stream().to_owned(),
        });
        if let Some(addr) = self.health_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--health-addr {addr}: cannot listen: {e}"))?;
            tracing::info!(addr = %listener.local_addr().map_or(addr, |a| a), "health endpoint: /live, /ready");
            tokio::spawn(serve_health(listener, health.clone()));
        }
        let (tx, mut rx) = mpsc::channel::<BatchMetrics>(256);
        let metrics = self.metrics.clone();
        let publisher = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                metrics.publish(&m).await;
            }
            metrics.flush().await;
        });
        let result = self.lease_loop(&shutdown, &health, &tx).await;
        health.set(Role::Stopping);
        drop(tx);
        // Metrics of the last batches still go out (bounded by PutMetricData's timeout each).
        let _ = tokio::time::timeout(Duration::from_secs(5), publisher).await;
        result
    }

    async fn lease_loop(
        &self,
        shutdown: &Arc<AtomicBool>,
        health: &Arc<Health>,
        tx: &mpsc::Sender<BatchMetrics>,
    ) -> Result<(), String> {
        let (stream, region) = (self.replicator.stream(), self.replicator.source_region());
        let poll = self.lease_ttl / 3;
        while !shutdown.load(Ordering::Relaxed) {
            match self.lease_table.acquire_lease(stream, region, &self.owner, self.lease_ttl).await {
                Ok(Some(lease)) => {
                    health.table_ok.store(true, Ordering::Relaxed);
                    health.set(Role::Active);
                    let outcome = self.replicate_while_owner(lease.expires_at, shutdown, health, tx).await;
                    if shutdown.load(Ordering::Relaxed) || outcome.is_err() {
                        if let Err(e) = self.lease_table.release_lease(stream, region, &self.owner).await {
                            tracing::warn!(error = %e, "releasing the lease failed; it expires by itself");
                        }
                    }
                    outcome?;
                    continue;
                }
                Ok(None) => {
                    health.table_ok.store(true, Ordering::Relaxed);
                    health.set(Role::Standby);
                }
                Err(e) => {
                    health.table_ok.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "the lease cannot be read or taken (retried)");
                }
            }
            sleep_unless(shutdown, poll).await;
        }
        Ok(())
    }

    /// Replicates while the lease is held: a heartbeat renews it; when a renewal says another
    /// instance holds it, or the lease would expire unconfirmed, replication stops after the
    /// batch in flight.
    async fn replicate_while_owner(
        &self,
        expires_at: SystemTime,
        shutdown: &Arc<AtomicBool>,
        health: &Arc<Health>,
        tx: &mpsc::Sender<BatchMetrics>,
    ) -> Result<(), String> {
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (table, owner, ttl) = (self.lease_table.clone(), self.owner.clone(), self.lease_ttl);
            let (stream, region) = (self.replicator.stream().to_owned(), self.replicator.source_region().to_owned());
            let (stop, shutdown, health) = (stop.clone(), shutdown.clone(), health.clone());
            tokio::spawn(async move {
                let mut expires_at = expires_at;
                let mut next_renewal = Instant::now() + ttl / 3;
                loop {
                    let wait = next_renewal.saturating_duration_since(Instant::now());
                    tokio::time::sleep(wait.min(Duration::from_millis(100))).await;
                    if shutdown.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    if Instant::now() < next_renewal {
                        continue;
                    }
                    match table.acquire_lease(&stream, &region, &owner, ttl).await {
                        Ok(Some(lease)) => {
                            health.table_ok.store(true, Ordering::Relaxed);
                            expires_at = lease.expires_at;
                            next_renewal = Instant::now() + ttl / 3;
                        }
                        Ok(None) => {
                            tracing::warn!(owner = %owner, "another instance took the lease; stopping after the batch in flight");
                            stop.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => {
                            health.table_ok.store(false, Ordering::Relaxed);
                            // Stop before the lease can lapse unconfirmed (a third of the TTL of margin).
                            let left = expires_at.duration_since(SystemTime::now()).unwrap_or_default();
                            if left < ttl / 3 {
                                tracing::warn!(error = %e, table = %table.table(), "cannot renew the lease before it expires; stopping after the batch in flight and standing by (check that the control table is reachable)");
                                stop.store(true, Ordering::Relaxed);
                                return;
                            }
                            tracing::warn!(error = %e, "renewing the lease failed (retried in 500 ms)");
                            next_renewal = Instant::now() + Duration::from_millis(500).min(ttl / 6);
                        }
                    }
                }
            })
        };
        let result = self
            .replicator
            .run(self.source.clone(), &stop, |outcome| {
                if tx.try_send(BatchMetrics::of(outcome)).is_err() {
                    tracing::warn!("metrics queue full: a batch's metrics were dropped");
                }
            })
            .await;
        stop.store(true, Ordering::Relaxed);
        let _ = heartbeat.await;
        if !shutdown.load(Ordering::Relaxed) {
            health.set(Role::Standby);
        }
        result.map_err(|e| format!("replication stopped: {e}"))
    }
}

async fn sleep_unless(flag: &AtomicBool, total: Duration) {
    let deadline = Instant::now() + total;
    while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100).min(deadline - Instant::now())).await;
    }
}

/// A minimal HTTP/1.1 answer for orchestrator health checks: `GET /live` (200 while the process
/// runs), `GET /ready` (200 when standing by or replicating with the control table reachable,
/// else 503); both with a JSON body naming the role. One request per connection.
async fn serve_health(listener: tokio::net::TcpListener, health: Arc<Health>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { continue };
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut len = 0;
            // Read the request head (bounded), with a deadline.
            let read = tokio::time::timeout(Duration::from_secs(2), async {
                while len < buf.len() {
                    match conn.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let path = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("");
            let role = health.role();
            let body = format!(
                r#"{{"role":"{}","owner":{:?},"stream":{:?},"control_table_reachable":{}}}"#,
                role.name(),
                health.owner,
                health.stream,
                health.table_ok.load(Ordering::Relaxed)
            );
            let status = match path {
                "/live" => "200 OK",
                "/ready" if health.ready() => "200 OK",
                "/ready" => "503 Service Unavailable",
                _ => "404 Not Found",
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
