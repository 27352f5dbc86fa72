//! [`HybridSubject`]: HybridCache instances on a Redis deployment of their
//! own (a [`RedisDeployment`] of any [`Topology`]), each with its clock
//! offset, its L2 behind a [`ChaosCache`] and its backplane behind a
//! [`ChaosBackplane`], over an in-process source of truth; and [`run`], which
//! drives the workload while a fault plan injects every fault in turn.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_cache::{
    Backplane, DistributedCache, ErrorKind, HybridCache, HybridEntryOptions, Propagation,
};
use strata_cache_redis::{RedisBackplane, RedisCache, RedisCacheOptions};
use tokio::time::Instant;

use super::{
    Ack, Bounds, Config, FaultKind, History, Random, Report, Subject, Write, run_workload,
};
use crate::{ChaosBackplane, ChaosCache, RedisDeployment, Topology};

/// Bound on one Redis call of the instances, and their `l2_timeout`.
const TIMEOUT: Duration = Duration::from_millis(250);

/// The source of truth: one row (a version) per key.
#[derive(Debug)]
struct Database {
    // A std Mutex: held for one row update, never across an await.
    rows: Mutex<Vec<u64>>,
    next_version: AtomicU64,
    down: AtomicBool,
}

/// The value the cache holds for a key: its row.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    key: u64,
    version: u64,
}

/// The error of the source of truth while it is down.
#[derive(Debug)]
struct DbDown;

impl std::fmt::Display for DbDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the database is down")
    }
}

impl std::error::Error for DbDown {}

impl Database {
    fn lock(&self) -> MutexGuard<'_, Vec<u64>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self, key: usize) -> Result<u64, DbDown> {
        if self.down.load(Ordering::Acquire) {
            return Err(DbDown);
        }
        Ok(self.lock()[key])
    }

    fn bump(&self, keys: std::ops::Range<usize>) -> Vec<(usize, u64)> {
        let mut rows = self.lock();
        keys.map(|key| {
            let version = self.next_version.fetch_add(1, Ordering::Relaxed) + 1;
            rows[key] = version;
            (key, version)
        })
        .collect()
    }
}

/// One instance and its fault injectors.
struct Instance {
    cache: HybridCache,
    l2: ChaosCache,
    backplane: ChaosBackplane,
}

/// HybridCache instances on one Redis, over an in-process database.
pub struct HybridSubject {
    config: Config,
    db: Arc<Database>,
    instances: Vec<Instance>,
}

impl HybridSubject {
    /// `count` instances on the Redis at `url`, clocks spread over ±1 s.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn new(url: &str, count: usize, config: Config) -> Self {
        let random = Random::new(config.seed ^ 0xC10C);
        let options = RedisCacheOptions::new(url)
            .with_instance_name("coherence:")
            .with_operation_timeout(TIMEOUT)
            .with_connect_timeout(TIMEOUT);
        let instances = (0..count)
            .map(|i| {
                let l2 = ChaosCache::new(Arc::new(
                    RedisCache::new(options.clone()).expect("valid Redis options"),
                ));
                let redis_backplane = RedisBackplane::new(&options).expect("valid Redis options");
                let backplane = ChaosBackplane::new(Arc::new(redis_backplane));
                #[allow(clippy::cast_possible_wrap)]
                let offset = (random.next() % 2001) as i64 - 1000;
                let cache = HybridCache::builder()
                    .distributed(Arc::new(l2.clone()) as Arc<dyn DistributedCache>)
                    .backplane(Arc::new(backplane.clone()) as Arc<dyn Backplane>)
                    .instance_id(format!("instance-{i}"))
                    .l2_timeout(TIMEOUT)
                    .clock_offset_ms(offset)
                    .build();
                Instance {
                    cache,
                    l2,
                    backplane,
                }
            })
            .collect();
        Self {
            db: Arc::new(Database {
                rows: Mutex::new(vec![0; config.keys]),
                next_version: AtomicU64::new(0),
                down: AtomicBool::new(false),
            }),
            config,
            instances,
        }
    }

    fn options(&self, key: usize) -> HybridEntryOptions {
        HybridEntryOptions::new()
            .with_expiration(Duration::from_secs(30))
            .with_fail_safe(Duration::from_secs(120))
            .with_fail_safe_throttle(Duration::from_millis(200))
            .with_tags([format!("g{}", self.config.group_of(key))])
    }
}

#[async_trait]
impl Subject for HybridSubject {
    fn instances(&self) -> usize {
        self.instances.len()
    }

    async fn read(&self, i: usize, key: usize) -> Option<u64> {
        let db = Arc::clone(&self.db);
        let row = self.instances[i]
            .cache
            .get_or_create(
                &format!("k{key}"),
                &self.options(key),
                move |_| async move {
                    db.read(key).map(|version| Row {
                        key: key as u64,
                        version,
                    })
                },
            )
            .await
            .ok()?;
        Some(row.version)
    }

    async fn write(&self, i: usize, write: Write) -> Option<Ack> {
        let cache = &self.instances[i].cache;
        let (versions, propagation) = match write {
            Write::Set(key) => {
                let versions = self.db.bump(key..key + 1);
                let row = Row {
                    key: key as u64,
                    version: versions[0].1,
                };
                let done = cache.set(&format!("k{key}"), row, &self.options(key)).await;
                (versions, done.ok()?)
            }
            Write::Remove(key) => {
                let versions = self.db.bump(key..key + 1);
                (versions, cache.remove(&format!("k{key}")).await.ok()?)
            }
            Write::Tag(group) => {
                let versions = self.db.bump(self.config.keys_of(group));
                (
                    versions,
                    cache.remove_by_tag(&format!("g{group}")).await.ok()?,
                )
            }
        };
        Some(Ack {
            versions,
            deferred: propagation == Propagation::Deferred,
        })
    }

    fn factory_runs(&self) -> u64 {
        self.instances
            .iter()
            .map(|i| i.cache.stats().factory_runs())
            .sum()
    }
}

/// Which faults a run injects.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Kill Redis and restart it empty.
    pub redis_restart: bool,
    /// Freeze Redis (SIGSTOP), then resume it.
    pub redis_hung: bool,
    /// Cut one instance off from Redis, Redis keeping its data.
    pub partition: bool,
    /// Make single L2 calls fail.
    pub l2_errors: bool,
    /// Lose backplane notices.
    pub lost_notices: bool,
    /// Make the source of truth fail for a while.
    pub database_down: bool,
    /// Kill a master (on a cluster, the master of a random slot): a replica
    /// takes over, with what it had replicated; the killed node comes back
    /// as a replica. Only on a cluster or sentinels.
    pub master_failover: bool,
}

impl Faults {
    /// Every fault.
    pub fn all() -> Self {
        Self {
            redis_restart: true,
            redis_hung: true,
            partition: true,
            l2_errors: true,
            lost_notices: true,
            database_down: true,
            master_failover: false,
        }
    }

    /// Every fault that `topology` can undergo: on a cluster or sentinels, a
    /// master failover in place of a restart of the one server.
    pub fn all_on(topology: Topology) -> Self {
        let single = topology == Topology::Single;
        Self {
            redis_restart: single,
            master_failover: !single,
            ..Self::all()
        }
    }

    /// The faults switched on, for a report's heading.
    pub fn describe(&self) -> String {
        let on: Vec<&str> = [
            (self.lost_notices, "lost notices"),
            (self.l2_errors, "L2 errors"),
            (self.redis_hung, "Redis hung"),
            (self.partition, "partition"),
            (self.redis_restart, "Redis restart"),
            (self.database_down, "database down"),
            (self.master_failover, "master failover"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if on.is_empty() {
            "no fault".to_owned()
        } else {
            format!("faults: {}", on.join(", "))
        }
    }

    /// No fault: a healthy run.
    pub fn none() -> Self {
        Self {
            redis_restart: false,
            redis_hung: false,
            partition: false,
            l2_errors: false,
            lost_notices: false,
            database_down: false,
            master_failover: false,
        }
    }
}

/// A change to the deployment, run on a blocking thread; returns a port.
type DeploymentChange = Box<dyn FnOnce(&mut RedisDeployment) -> Option<u16> + Send>;

/// The faults a run's deployment can undergo.
impl RedisDeployment {
    /// Freezes a master (the server, a random one of the cluster's, the
    /// sentinels' master); returns what [`Self::resume`] needs.
    fn pause(&mut self, random: u64) -> u16 {
        match self {
            Self::Single(server) => {
                server.pause();
                server.port()
            }
            Self::Cluster(cluster) => {
                let masters = cluster.masters();
                let port = masters[usize::try_from(random).unwrap_or(0) % masters.len()];
                cluster.pause(port);
                port
            }
            Self::Sentinel(sentinel) => {
                let port = sentinel.master_port();
                sentinel.pause(port);
                port
            }
        }
    }

    fn resume(&mut self, port: u16) {
        match self {
            Self::Single(server) => server.resume(),
            Self::Cluster(cluster) => cluster.resume(port),
            Self::Sentinel(sentinel) => sentinel.resume(port),
        }
    }

    fn stop(&mut self) {
        if let Self::Single(server) = self {
            server.stop();
        }
    }

    fn start_again(&mut self) {
        if let Self::Single(server) = self {
            server.start();
        }
    }

    /// Kills a master and returns once a replica took over; returns the
    /// killed node's port.
    fn kill_master(&mut self, random: u64) -> Option<u16> {
        match self {
            Self::Single(_) => None,
            Self::Cluster(cluster) => {
                let slot = u16::try_from(random % 16384).unwrap_or(0);
                Some(cluster.kill_master_of_slot(slot))
            }
            Self::Sentinel(sentinel) => {
                let port = sentinel.master_port();
                sentinel.kill_master();
                Some(port)
            }
        }
    }

    /// Brings a killed node back (it rejoins as a replica).
    fn restart(&mut self, port: u16) {
        match self {
            Self::Single(_) => {}
            Self::Cluster(cluster) => cluster.restart(port),
            Self::Sentinel(sentinel) => sentinel.restart(port),
        }
    }
}

/// Runs `config`'s workload against `count` HybridCache instances on a Redis
/// of their own, with `faults` injected one after another, in cycles of 30 s
/// (each fault lasts about 2 s, with calm in between), and judges the run.
///
/// # Panics
///
/// When `redis-server` cannot be started.
pub async fn run(count: usize, config: Config, faults: Faults, bounds: Bounds) -> Report {
    run_on(Topology::Single, count, config, faults, bounds).await
}

/// [`run`] on the deployment of `topology`.
///
/// # Panics
///
/// When the deployment cannot be started.
pub async fn run_on(
    topology: Topology,
    count: usize,
    config: Config,
    faults: Faults,
    bounds: Bounds,
) -> Report {
    let deployment = tokio::task::spawn_blocking(move || RedisDeployment::start(topology))
        .await
        .expect("the deployment starts");
    let url = deployment.url();
    let server = Arc::new(Mutex::new(deployment));
    let subject = Arc::new(HybridSubject::new(&url, count, config.clone()));
    let history = Arc::new(History::default());
    // Let every instance connect and subscribe before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let plan = tokio::spawn(fault_plan(
        Arc::clone(&subject),
        Arc::clone(&server),
        Arc::clone(&history),
        config.clone(),
        faults,
    ));
    run_workload(Arc::clone(&subject), &config, Arc::clone(&history)).await;
    let _ = plan.await;
    // Let replays finish before the last verdict is drawn: nothing to judge
    // happens here, the history is complete.
    let report = history.judge(bounds, subject.factory_runs());
    // The guards stop their processes in a blocking drop.
    let _ = tokio::task::spawn_blocking(move || drop(server)).await;
    report
}

/// Injects the faults in turn until the run ends.
async fn fault_plan(
    subject: Arc<HybridSubject>,
    server: Arc<Mutex<RedisDeployment>>,
    history: Arc<History>,
    config: Config,
    faults: Faults,
) {
    let end = Instant::now() + config.duration;
    let random = Random::new(config.seed ^ 0xFA17);
    let lasting = Duration::from_secs(2);
    let calm = Duration::from_secs(3);
    let steps: Vec<FaultKind> = [
        (faults.lost_notices, FaultKind::LostNotices),
        (faults.l2_errors, FaultKind::L2Errors),
        (faults.redis_hung, FaultKind::RedisHung),
        (faults.partition, FaultKind::Partition),
        (faults.redis_restart, FaultKind::RedisRestart),
        (faults.database_down, FaultKind::DatabaseDown),
        (faults.master_failover, FaultKind::MasterFailover),
    ]
    .into_iter()
    .filter_map(|(on, kind)| on.then_some(kind))
    .collect();
    if steps.is_empty() {
        return;
    }
    let mut step = 0;
    loop {
        tokio::time::sleep(calm).await;
        if Instant::now() + lasting >= end {
            return;
        }
        let kind = steps[step % steps.len()];
        step += 1;
        let start = Instant::now();
        inject(&subject, &server, kind, lasting, &random).await;
        history.fault(kind, start, Instant::now());
    }
}

/// Applies one fault for about `lasting`, then heals it.
async fn inject(
    subject: &HybridSubject,
    server: &Arc<Mutex<RedisDeployment>>,
    kind: FaultKind,
    lasting: Duration,
    random: &Random,
) {
    let with_server = |f: DeploymentChange| {
        let server = Arc::clone(server);
        tokio::task::spawn_blocking(move || {
            f(&mut server.lock().unwrap_or_else(PoisonError::into_inner))
        })
    };
    match kind {
        FaultKind::LostNotices => {
            for i in &subject.instances {
                i.backplane.lose_ratio(0.2);
            }
            tokio::time::sleep(lasting).await;
            for i in &subject.instances {
                i.backplane.heal();
            }
        }
        FaultKind::L2Errors => {
            let until = Instant::now() + lasting;
            while Instant::now() < until {
                let i = &subject.instances[random.below(subject.instances.len())];
                let kind = if random.chance(0.5) {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Unavailable
                };
                i.l2.fail_next(1, kind);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        FaultKind::RedisHung => {
            let pick = u64::try_from(random.below(1 << 16)).unwrap_or(0);
            let paused = with_server(Box::new(move |d| Some(d.pause(pick)))).await;
            tokio::time::sleep(lasting).await;
            if let Ok(Some(port)) = paused {
                let _ = with_server(Box::new(move |d| {
                    d.resume(port);
                    None
                }))
                .await;
            }
        }
        FaultKind::Partition => {
            let i = &subject.instances[random.below(subject.instances.len())];
            i.l2.fail_with(ErrorKind::Unavailable);
            i.backplane.fail_with(ErrorKind::Unavailable);
            i.backplane.lose_ratio(1.0);
            tokio::time::sleep(lasting).await;
            i.l2.heal();
            i.backplane.heal();
        }
        FaultKind::RedisRestart => {
            let _ = with_server(Box::new(|d| {
                d.stop();
                None
            }))
            .await;
            tokio::time::sleep(lasting / 2).await;
            let _ = with_server(Box::new(|d| {
                d.start_again();
                None
            }))
            .await;
        }
        FaultKind::MasterFailover => {
            let pick = u64::try_from(random.below(1 << 16)).unwrap_or(0);
            let killed = with_server(Box::new(move |d| d.kill_master(pick))).await;
            if let Ok(Some(port)) = killed {
                let _ = with_server(Box::new(move |d| {
                    d.restart(port);
                    None
                }))
                .await;
            }
        }
        FaultKind::DatabaseDown => {
            subject.db.down.store(true, Ordering::Release);
            tokio::time::sleep(lasting).await;
            subject.db.down.store(false, Ordering::Release);
        }
    }
}
