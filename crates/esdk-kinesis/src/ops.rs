//! Operator procedures over the control tables of every Region: set up, fenced failover with the
//! replay point for producers, and a status report. The `esdk kinesis` commands and the demo
//! run these; each takes one [`ControlTable`] per Region (the same table name, one client per
//! Region) and tolerates an unreachable Region where the procedure allows it.

use std::time::{Duration, SystemTime};

use crate::{ActiveRegion, ControlTable, KinesisError, Lease, Result, ShardProgress};

/// The commit-time disorder between producers that failover allows for by default: replay
/// starts this long before the smallest watermark.
pub const DEFAULT_FAILOVER_MARGIN: Duration = Duration::from_secs(60);

/// How long `init` waits for a table it created to become ACTIVE.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The control table of one Region.
#[derive(Clone, Debug)]
pub struct RegionTable {
    /// The Region.
    pub region: String,
    /// Its control table.
    pub table: ControlTable,
}

impl RegionTable {
    /// The control table `table` of `region`.
    pub fn new(region: &str, table: ControlTable) -> Self {
        Self { region: region.to_owned(), table }
    }
}

/// What `init` did in one Region.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionInit {
    /// The Region.
    pub region: String,
    /// The control table was created (it did not exist).
    pub created_table: bool,
    /// The active-Region flag was created (it did not exist).
    pub created_flag: bool,
    /// The flag as stored (an existing flag is left as it is, even naming another Region).
    pub active: ActiveRegion,
}

/// Creates what is missing in every Region: the control table, then the active-Region flag
/// naming `active`. Safe to run again; stops at the first Region that fails (each Region must
/// be set up before replication starts).
pub async fn init(regions: &[RegionTable], stream: &str, active: &str) -> Result<Vec<RegionInit>> {
    check_regions(regions, Some(active))?;
    let mut done = Vec::with_capacity(regions.len());
    for r in regions {
        let created_table = r.table.create_if_missing().await?;
        r.table.wait_until_active(TABLE_ACTIVE_TIMEOUT).await?;
        let (flag, created_flag) = r.table.init_active_region(stream, active).await?;
        done.push(RegionInit { region: r.region.clone(), created_table, created_flag, active: flag });
    }
    Ok(done)
}

/// The flag of one Region before and after a failover.
#[derive(Debug)]
#[non_exhaustive]
pub struct RegionFlip {
    /// The Region.
    pub region: String,
    /// The flag before (`Err`: the Region could not be read; it is left for a later run).
    pub before: std::result::Result<ActiveRegion, KinesisError>,
    /// The flag read back after the change (`None`: dry run, or the Region was unreachable).
    pub after: Option<ActiveRegion>,
}

/// A failover's result.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failover {
    /// The new active Region.
    pub to: String,
    /// Producers in `to` replay the records committed at or after this time; `None`: from the
    /// beginning (some shard has no watermark).
    pub resume_from: Option<SystemTime>,
    /// Per source Region (every Region but `to`), the shards its replication into `to` knows.
    pub shards: Vec<(String, Vec<ShardProgress>)>,
    /// Per Region, the flag before and after.
    pub regions: Vec<RegionFlip>,
    /// Nothing was changed.
    pub dry_run: bool,
}

impl Failover {
    /// Regions that could not be reached (their flag still names the old Region: run the
    /// failover again when they are back, it is idempotent).
    pub fn unreachable(&self) -> impl Iterator<Item = &RegionFlip> {
        self.regions.iter().filter(|r| r.before.is_err())
    }
}

/// A fenced failover of `stream` to `to`: reads the flag in every Region, flips it in each
/// reachable Region from the epoch that Region holds (a Region already naming `to` is left as
/// it is), reads it back, and computes where producers in `to` resume. `to`'s own table must
/// be reachable (it holds the checkpoints of replication into `to`); other Regions may be
/// down. A concurrent change anywhere fails the failover with [`KinesisError::FlagConflict`]
/// (run it again after reading the new flag).
///
/// The resume point is the smallest watermark, minus `margin`, over every shard of every other
/// Region's stream not yet replicated to its end into `to`: every record committed before it
/// is already in `to`'s stream.
pub async fn fail_over(
    regions: &[RegionTable],
    stream: &str,
    to: &str,
    margin: Duration,
    dry_run: bool,
) -> Result<Failover> {
    check_regions(regions, Some(to))?;
    let target = regions
        .iter()
        .find(|r| r.region == to)
        .map(|r| &r.table)
        .ok_or_else(|| KinesisError::InvalidConfig(format!("--to {to} is not one of the Regions given")))?;
    let mut flips = Vec::with_capacity(regions.len());
    for r in regions {
        let before = match r.table.active_region(stream).await {
            // The target must be readable and set up: it is the Region taking over.
            Err(e) if r.region == to => return Err(e),
            before => before,
        };
        flips.push(RegionFlip { region: r.region.clone(), before, after: None });
    }
    // The replay point first: it needs only `to`'s table, and a dry run prints it.
    let mut from: Option<Option<SystemTime>> = None;
    let mut shards = Vec::new();
    for r in regions.iter().filter(|r| r.region != to) {
        let point = target.resume_point(stream, &r.region, margin).await?;
        from = Some(match (from, point.from) {
            (None, f) => f,
            (Some(None), _) | (_, None) => None,
            (Some(Some(a)), Some(b)) => Some(a.min(b)),
        });
        shards.push((r.region.clone(), point.shards));
    }
    let resume_from = from.unwrap_or_else(|| Some(SystemTime::now()));
    if !dry_run {
        for (r, flip) in regions.iter().zip(flips.iter_mut()) {
            let Ok(current) = &flip.before else { continue };
            if current.region != to {
                r.table.set_active_region(stream, to, current.epoch).await?;
            }
            let read = r.table.active_region(stream).await?;
            if read.region != to {
                return Err(KinesisError::ControlTable {
                    table: r.table.table().to_owned(),
                    reason: format!(
                        "in {} the flag reads back as {} at epoch {}, not {to}",
                        r.region, read.region, read.epoch
                    ),
                });
            }
            flip.after = Some(read);
        }
    }
    Ok(Failover { to: to.to_owned(), resume_from, shards, regions: flips, dry_run })
}

/// One source Region's replication into a Region, as its control table records it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SourceStatus {
    /// The Region read.
    pub source_region: String,
    /// Who holds the long-running replicator's lease (`None`: nobody, or Lambda mode).
    pub lease: Option<Lease>,
    /// Per shard: position, watermark, finished.
    pub shards: Vec<ShardProgress>,
    /// Where producers here would resume after a failover from that Region (with the default
    /// margin; `None`: from the beginning).
    pub resume_from: Option<SystemTime>,
}

/// One Region's view.
#[derive(Debug)]
#[non_exhaustive]
pub struct RegionStatus {
    /// The Region.
    pub region: String,
    /// Its flag (`Err`: unreachable or not set up).
    pub active: std::result::Result<ActiveRegion, KinesisError>,
    /// Replication into this Region from every other Region.
    pub sources: Vec<std::result::Result<SourceStatus, KinesisError>>,
}

/// Reads every Region's flag and, from each Region's table, the replication into it from every
/// other Region. Unreachable Regions are reported, not fatal.
pub async fn status(regions: &[RegionTable], stream: &str, margin: Duration) -> Result<Vec<RegionStatus>> {
    check_regions(regions, None)?;
    let mut out = Vec::with_capacity(regions.len());
    for r in regions {
        let active = r.table.active_region(stream).await;
        let mut sources = Vec::new();
        for src in regions.iter().filter(|s| s.region != r.region) {
            sources.push(source_status(&r.table, stream, &src.region, margin).await);
        }
        out.push(RegionStatus { region: r.region.clone(), active, sources });
    }
    Ok(out)
}

async fn source_status(table: &ControlTable, stream: &str, source: &str, margin: Duration) -> Result<SourceStatus> {
    let lease = table.lease(stream, source).await?;
    let point = table.resume_point(stream, source, margin).await?;
    Ok(SourceStatus { source_region: source.to_owned(), lease, shards: point.shards, resume_from: point.from })
}

/// At least two distinct Regions, and `named` (if any) among them.
fn check_regions(regions: &[RegionTable], named: Option<&str>) -> Result<()> {
    let mut names: Vec<&str> = regions.iter().map(|r| r.region.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() != regions.len() || names.len() < 2 {
        return Err(KinesisError::InvalidConfig(format!(
            "--regions must name at least two distinct Regions, got {:?}",
            regions.iter().map(|r| r.region.as_str()).collect::<Vec<_>>()
        )));
    }
    if let Some(named) = named.filter(|n| !names.contains(n)) {
        return Err(KinesisError::InvalidConfig(format!("Region {named} is not one of --regions {names:?}")));
    }
    Ok(())
}
