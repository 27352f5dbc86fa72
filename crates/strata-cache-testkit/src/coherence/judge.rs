//! The history of a checker run (reads, acknowledged writes, faults) and the
//! verdict on every read.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Ack, Write};

/// The staleness bounds a run is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// After a write call returned, healthy: every later read sees it.
    pub healthy: Duration,
    /// While notices are lost or an instance is cut off: the trust window
    /// and one heartbeat period.
    pub trust: Duration,
    /// After an outage ends (or a deferred write): reconnect time plus 1 s.
    pub recovery: Duration,
    /// Violations are stale reads beyond `margin` times their bound (a
    /// loaded machine must not flake); reads beyond one time are reported.
    pub margin: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            healthy: Duration::from_millis(50),
            trust: Duration::from_millis(1250),
            recovery: Duration::from_secs(2),
            margin: 5,
        }
    }
}

/// A fault the plan injected, for the bounds of the writes it overlaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Redis killed, then restarted empty.
    RedisRestart,
    /// Redis frozen (SIGSTOP), then resumed with its data.
    RedisHung,
    /// One instance cut off from Redis (L2 and backplane), Redis keeping its data.
    Partition,
    /// Single L2 calls failing or timing out.
    L2Errors,
    /// Backplane notices lost.
    LostNotices,
    /// The source of truth failing: factories fail, fail-safe serves.
    DatabaseDown,
    /// A master killed and a replica promoted, with what it had replicated:
    /// to the instances, a Redis that restarted with part of its data.
    MasterFailover,
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            FaultKind::RedisRestart => "Redis killed and restarted empty",
            FaultKind::RedisHung => "Redis hung (SIGSTOP)",
            FaultKind::Partition => "instance partitioned from Redis",
            FaultKind::L2Errors => "single L2 calls fail or time out",
            FaultKind::LostNotices => "backplane notices lost",
            FaultKind::DatabaseDown => "database down (fail-safe)",
            FaultKind::MasterFailover => "master killed, replica promoted",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Read {
    instance: usize,
    key: usize,
    started: Instant,
    finished: Instant,
    version: u64,
}

#[derive(Debug, Clone, Copy)]
struct WriteRecord {
    what: Write,
    key: usize,
    version: u64,
    started: Instant,
    acked: Instant,
    deferred: bool,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    kind: FaultKind,
    start: Instant,
    end: Instant,
}

#[derive(Debug, Default)]
struct Records {
    reads: Vec<Read>,
    writes: Vec<WriteRecord>,
    faults: Vec<Fault>,
}

/// What a run did, recorded as it happens.
#[derive(Debug, Default)]
pub struct History {
    // A std Mutex: one push per event, never held across an await.
    records: Mutex<Records>,
}

impl History {
    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read of `key` through instance `_instance` returned `version`.
    pub fn read(
        &self,
        instance: usize,
        key: usize,
        started: Instant,
        finished: Instant,
        version: u64,
    ) {
        self.lock().reads.push(Read {
            instance,
            key,
            started,
            finished,
            version,
        });
    }

    /// A write call that started at `started` returned `ack` at `acked`.
    pub fn write(&self, what: Write, started: Instant, acked: Instant, ack: &Ack) {
        let mut records = self.lock();
        for &(key, version) in &ack.versions {
            records.writes.push(WriteRecord {
                what,
                key,
                version,
                started,
                acked,
                deferred: ack.deferred,
            });
        }
    }

    /// A fault was active from `start` to `end`.
    pub fn fault(&self, kind: FaultKind, start: Instant, end: Instant) {
        self.lock().faults.push(Fault { kind, start, end });
    }

    /// Judges every read by `bounds`.
    pub fn judge(&self, bounds: Bounds, factory_runs: u64) -> Report {
        let records = self.lock();
        let deadlines = |margin: u32| -> HashMap<usize, Vec<(Instant, u64)>> {
            let mut by_key: HashMap<usize, Vec<(Instant, u64)>> = HashMap::new();
            for w in &records.writes {
                let (anchor, bound) = allowance(w, &records.faults, bounds);
                by_key
                    .entry(w.key)
                    .or_default()
                    .push((anchor + bound * margin, w.version));
            }
            for list in by_key.values_mut() {
                list.sort_unstable_by_key(|(deadline, _)| *deadline);
                let mut max = 0;
                for item in list.iter_mut() {
                    max = max.max(item.1);
                    item.1 = max;
                }
            }
            by_key
        };
        let (strict, lenient) = (deadlines(1), deadlines(bounds.margin));
        let required = |table: &HashMap<usize, Vec<(Instant, u64)>>, read: &Read| {
            table.get(&read.key).map_or(0, |list| {
                let passed = list.partition_point(|(deadline, _)| *deadline < read.started);
                if passed == 0 { 0 } else { list[passed - 1].1 }
            })
        };
        let mut acked_by_key: HashMap<usize, Vec<(Instant, u64)>> = HashMap::new();
        for w in &records.writes {
            acked_by_key
                .entry(w.key)
                .or_default()
                .push((w.acked, w.version));
        }
        for list in acked_by_key.values_mut() {
            list.sort_unstable_by_key(|(acked, _)| *acked);
        }
        let mut report = Report {
            reads: records.reads.len() as u64,
            writes: records.writes.len() as u64,
            deferred_writes: records.writes.iter().filter(|w| w.deferred).count() as u64,
            factory_runs,
            faults: records
                .faults
                .iter()
                .map(|f| (f.kind, f.end - f.start))
                .collect(),
            ..Report::default()
        };
        let mut staleness = Vec::new();
        for read in &records.reads {
            let db_down = records.faults.iter().any(|f| {
                f.kind == FaultKind::DatabaseDown && f.start < read.finished && read.started < f.end
            });
            if db_down {
                report.fail_safe_reads += 1;
                continue;
            }
            report.judged += 1;
            let debug = std::env::var_os("STRATA_COHERENCE_DEBUG").is_some();
            if read.version < required(&strict, read) {
                report.beyond_bound += 1;
                if debug && report.beyond_bound <= 5 {
                    eprintln!("beyond its bound: {}", explain(read, &records));
                }
            }
            if read.version < required(&lenient, read) {
                report.violations += 1;
                if debug && report.violations <= 5 {
                    eprintln!("violation: {}", explain(read, &records));
                }
            }
            // How long after the first newer acknowledged write this read
            // still returned the older value.
            if let Some(list) = acked_by_key.get(&read.key) {
                let before = list.partition_point(|(acked, _)| *acked < read.started);
                if let Some((acked, _)) = list[..before].iter().find(|(_, v)| *v > read.version) {
                    staleness.push(read.started - *acked);
                }
            }
        }
        staleness.sort_unstable();
        report.stale_reads = staleness.len() as u64;
        let pick = |q: f64| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let index = ((staleness.len() as f64 - 1.0) * q).round() as usize;
            staleness.get(index).copied().unwrap_or_default()
        };
        report.staleness_p50 = pick(0.5);
        report.staleness_p99 = pick(0.99);
        report.worst_staleness = staleness.last().copied().unwrap_or_default();
        report
    }
}

/// One stale read with the writes it missed and the faults of the run, for
/// `STRATA_COHERENCE_DEBUG` (times from the first read).
fn explain(read: &Read, records: &Records) -> String {
    let origin = records.reads.first().map_or(read.started, |r| r.started);
    let at = |t: Instant| t.saturating_duration_since(origin);
    let missed: Vec<String> = records
        .writes
        .iter()
        .filter(|w| w.key == read.key && w.version > read.version && w.acked < read.started)
        .map(|w| {
            format!(
                "{:?} v{} {:?}..{:?}{}",
                w.what,
                w.version,
                at(w.started),
                at(w.acked),
                if w.deferred { " deferred" } else { "" }
            )
        })
        .collect();
    let faults: Vec<String> = records
        .faults
        .iter()
        .map(|f| format!("{:?} {:?}..{:?}", f.kind, at(f.start), at(f.end)))
        .collect();
    format!(
        "instance {} read key {} v{} at {:?}; missed {missed:?}; faults {faults:?}",
        read.instance,
        read.key,
        read.version,
        at(read.started)
    )
}

/// The bound of a write: from which moment (`anchor`), for how long.
fn allowance(w: &WriteRecord, faults: &[Fault], bounds: Bounds) -> (Instant, Duration) {
    let mut anchor = w.acked;
    let mut bound = bounds.healthy;
    let mut outage = w.deferred;
    for f in faults {
        // An outage lasts, for an instance, until it has reconnected and its
        // breaker lets calls through again: a write made in that tail is
        // made during the outage too.
        let tail = match f.kind {
            FaultKind::LostNotices | FaultKind::DatabaseDown => Duration::ZERO,
            _ => bounds.recovery,
        };
        if f.start > w.acked + bounds.healthy || f.end + tail < w.started {
            continue; // does not overlap the write's propagation
        }
        match f.kind {
            FaultKind::RedisRestart
            | FaultKind::MasterFailover
            | FaultKind::RedisHung
            | FaultKind::Partition
            | FaultKind::L2Errors => {
                anchor = anchor.max(f.end);
                outage = true;
            }
            FaultKind::LostNotices => bound = bound.max(bounds.trust),
            FaultKind::DatabaseDown => {}
        }
    }
    if outage {
        bound = bound.max(bounds.recovery);
    }
    (anchor, bound)
}

/// The verdict of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Reads made (cancelled ones excluded).
    pub reads: u64,
    /// Reads judged (those not overlapping a database outage).
    pub judged: u64,
    /// Reads that overlapped a database outage (fail-safe may serve old values).
    pub fail_safe_reads: u64,
    /// Key versions written by acknowledged writes.
    pub writes: u64,
    /// Of which the call returned `Deferred`.
    pub deferred_writes: u64,
    /// Judged reads older than a write acknowledged before they began,
    /// whatever the bound.
    pub stale_reads: u64,
    /// Stale reads beyond their bound.
    pub beyond_bound: u64,
    /// Stale reads beyond `margin` times their bound: what a run must not have.
    pub violations: u64,
    /// Median, 99th percentile and maximum staleness of the stale reads.
    pub staleness_p50: Duration,
    /// See `staleness_p50`.
    pub staleness_p99: Duration,
    /// See `staleness_p50`.
    pub worst_staleness: Duration,
    /// Factory runs over all instances.
    pub factory_runs: u64,
    /// The faults injected, with how long each lasted.
    pub faults: Vec<(FaultKind, Duration)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| measure | value |")?;
        writeln!(f, "|---|---|")?;
        writeln!(
            f,
            "| reads (judged / during a database outage) | {} ({} / {}) |",
            self.reads, self.judged, self.fail_safe_reads
        )?;
        writeln!(
            f,
            "| key versions written (deferred) | {} ({}) |",
            self.writes, self.deferred_writes
        )?;
        writeln!(f, "| factory runs | {} |", self.factory_runs)?;
        writeln!(
            f,
            "| stale reads, within their bound | {} |",
            self.stale_reads - self.beyond_bound
        )?;
        writeln!(
            f,
            "| stale reads beyond their bound | {} |",
            self.beyond_bound
        )?;
        writeln!(
            f,
            "| stale reads beyond 5x their bound (violations) | {} |",
            self.violations
        )?;
        writeln!(
            f,
            "| staleness of stale reads: p50 / p99 / max | {:?} / {:?} / {:?} |",
            self.staleness_p50, self.staleness_p99, self.worst_staleness
        )?;
        let mut counts: Vec<(FaultKind, usize, Duration)> = Vec::new();
        for (kind, lasted) in &self.faults {
            match counts.iter_mut().find(|(k, _, _)| k == kind) {
                Some((_, n, total)) => {
                    *n += 1;
                    *total += *lasted;
                }
                None => counts.push((*kind, 1, *lasted)),
            }
        }
        for (kind, n, total) in counts {
            writeln!(
                f,
                "| fault: {} | {n} times, {total:?} in all |",
                kind.name()
            )?;
        }
        Ok(())
    }
}
