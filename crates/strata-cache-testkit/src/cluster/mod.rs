//! [`RedisCluster`]: a throwaway Redis Cluster of three masters and three
//! replicas, for tests of cluster clients: redirections, failover, resharding.
//!
//! Every node is a `redis-server` on two free ports of 127.0.0.1 (its own and
//! its cluster bus port, chosen apart: the default bus port, port + 10000, may
//! be taken), with its own temporary directory holding its `nodes.conf` and
//! its log, and no persistence. The cluster is formed by `redis-cli --cluster
//! create`, as an operator would. A one-second node timeout makes failures
//! detected, and replicas promoted, within a few seconds.
//!
//! [`RedisCluster::with_password`] protects the data with a password: every
//! node requires it of clients and replicas send it to their masters; the
//! guard's own commands, `redis-cli --cluster create` and `MIGRATE` between
//! nodes authenticate with it, and [`RedisCluster::url`] carries it.
//!
//! The guard waits, after each of its operations, until every running node
//! agrees on who serves which slot and reports `cluster_state:ok`, so a test
//! starts from a settled cluster and a client sees one slot map. Admin
//! commands go through a small RESP client ([`crate::resp`]); clients under
//! test are the test's business. Forming the cluster lives in `create.rs`, the
//! slot migration in `migrate.rs`.

mod create;
mod migrate;
mod slot;
mod topology;

use std::time::Duration;

use crate::node::{self, Node};
use crate::resp::{self, info_field};
use topology::Topology;

/// Masters at creation, each with one replica.
const MASTERS: usize = 3;
/// How long a new, restarted or resharded cluster has to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover may take: detection (the 1 s node timeout, then gossip
/// until a majority of masters agree) plus the replica's election (a delay of
/// 0.5 to 1 s, then a vote) take a few seconds; the rest is room for a loaded
/// machine.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);

/// A Redis Cluster of 3 masters and 3 replicas on 127.0.0.1, every process
/// killed when the guard drops (after a panic too).
///
/// Needs `redis-server` and `redis-cli` 7.0 or later on `PATH`
/// (`--cluster-port` is from 7.0).
///
/// [`new`](Self::new) starts nodes anyone may use;
/// [`with_password`](Self::with_password) starts nodes that require a
/// password, for tests of a client's credentials.
///
/// # Example
///
/// ```no_run
/// use strata_cache_testkit::RedisCluster;
///
/// let mut cluster = RedisCluster::new();
/// let url = cluster.url(); // redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>
/// let slot = RedisCluster::slot_of("user:{42}");
/// let before = cluster.master_of_slot(slot);
/// let killed = cluster.kill_master_of_slot(slot); // returns after the failover
/// assert_eq!(killed, before);
/// assert_ne!(cluster.master_of_slot(slot), before);
/// cluster.restart(killed); // back as a replica of the new master
/// # drop(url);
/// ```
///
/// # Panics
///
/// Every method that starts, stops or reshards panics when the cluster does
/// not settle in time (30 s, 20 s for a failover); the message says what was
/// awaited and holds the last lines of every node's log.
#[derive(Debug)]
pub struct RedisCluster {
    /// All six nodes, in creation order.
    nodes: Vec<Node>,
    /// The masters at creation: the seeds of [`url`](Self::url).
    seeds: Vec<u16>,
    /// The password every node requires, if any.
    password: Option<String>,
}

impl Default for RedisCluster {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisCluster {
    /// Starts six nodes, forms a cluster of 3 masters with one replica each,
    /// and returns when every node reports `cluster_state:ok` with all 16384
    /// slots served, every node sees the same slot map and every replica's
    /// link to its master is up.
    ///
    /// # Panics
    ///
    /// See [the type's docs](RedisCluster#panics).
    #[must_use]
    pub fn new() -> Self {
        Self::start(None)
    }

    /// Like [`new`](Self::new), with every node protected by `password`: it
    /// requires `AUTH <password>` of clients (`--requirepass`), and a replica
    /// authenticates to its master with it (`--masterauth`). The guard's own
    /// commands authenticate too, so failover, restart, pause and
    /// [`migrate_slots`](Self::migrate_slots) work as without a password, and
    /// [`url`](Self::url) carries it: `redis+cluster://:<password>@...`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use strata_cache_testkit::RedisCluster;
    ///
    /// let cluster = RedisCluster::with_password("s3cret");
    /// assert!(cluster.url().starts_with("redis+cluster://:s3cret@127.0.0.1:"));
    /// ```
    ///
    /// # Panics
    ///
    /// When `password` is empty or starts with `--`; otherwise see [the
    /// type's docs](RedisCluster#panics).
    #[must_use]
    pub fn with_password(password: impl Into<String>) -> Self {
        let password = password.into();
        node::check_password("RedisCluster", &password);
        Self::start(Some(password))
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>`: the
    /// three masters at creation, as seeds. The list does not follow failovers
    /// (a client tries the next seed when one is down). With a
    /// [password](Self::with_password), `redis+cluster://:<password>@...`,
    /// the password percent-encoded.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!(
            "redis+cluster://{}{}",
            node::url_credentials(self.password()),
            seeds.join(",")
        )
    }

    /// The ports of all six nodes, killed ones included, in creation order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(Node::port).collect()
    }

    /// The ports of the current masters, sorted, as a running node sees them:
    /// masters flagged as failed and nodes this guard killed are left out.
    ///
    /// # Panics
    ///
    /// When no node answers `CLUSTER NODES`.
    pub fn masters(&self) -> Vec<u16> {
        let view = self.view();
        let mut masters: Vec<u16> = view
            .entries()
            .iter()
            .filter(|entry| entry.is_master && !entry.is_failed)
            .map(|entry| entry.port)
            .filter(|&port| {
                self.nodes
                    .iter()
                    .any(|n| n.port() == port && n.is_started())
            })
            .collect();
        masters.sort_unstable();
        masters
    }

    /// The slot of `key`: CRC16 (XMODEM) modulo 16384, of the hash tag when
    /// the key has one (`{user42}.cart` hashes `user42`), as `CLUSTER KEYSLOT`.
    pub fn slot_of(key: &str) -> u16 {
        slot::slot_of(key.as_bytes())
    }

    /// The port of the master serving `slot`, as a running node sees it.
    ///
    /// # Panics
    ///
    /// When `slot` is not below 16384, when no node answers `CLUSTER NODES`,
    /// or when no master serves the slot.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        assert!(slot < slot::SLOTS, "slot {slot} is not below 16384");
        self.view()
            .owner(slot)
            .unwrap_or_else(|| self.fail(&format!("no master serves slot {slot}")))
    }

    /// Kills (SIGKILL) the master serving `slot` and waits until its replica
    /// has been promoted: every running node reports `cluster_state:ok` and
    /// names that replica as the slot's master. Returns the killed port.
    ///
    /// Writes the master acknowledged but had not replicated are lost, as in
    /// production; write with `WAIT 1 0` first to keep a key.
    ///
    /// # Panics
    ///
    /// When the master has no running replica, or the failover does not
    /// complete within 20 s (message with every node's log).
    pub fn kill_master_of_slot(&mut self, slot: u16) -> u16 {
        let master = self.master_of_slot(slot);
        let view = self.view();
        let replicas: Vec<u16> = view
            .replicas_of(master)
            .into_iter()
            .filter(|&port| self.node(port).is_live())
            .collect();
        if replicas.is_empty() {
            self.fail(&format!(
                "the master 127.0.0.1:{master} of slot {slot} has no running replica to promote"
            ));
        }
        self.node_mut(master).kill();
        let outcome = node::poll_until(FAILOVER_TIMEOUT, || {
            let view = self.check(false)?;
            match view.owner(slot) {
                Some(owner) if replicas.contains(&owner) => Ok(()),
                owner => Err(format!("slot {slot} is served by {owner:?}")),
            }
        });
        if let Err(e) = outcome {
            self.fail(&format!(
                "killed the master 127.0.0.1:{master} of slot {slot}; its replica {replicas:?} \
                 was not promoted: {e}"
            ));
        }
        master
    }

    /// Starts a killed node again, with its `nodes.conf`: it rejoins the
    /// cluster, as a replica when its slots went to another master meanwhile.
    /// Returns when every running node reports `cluster_state:ok`, sees the
    /// same slot map and no longer flags the node as failed, and the node's
    /// replication link is up. Does nothing when the node runs.
    ///
    /// # Panics
    ///
    /// When `port` is not a node of this cluster, or the node does not rejoin
    /// within 30 s.
    pub fn restart(&mut self, port: u16) {
        if self.node(port).is_started() {
            return;
        }
        self.node_mut(port).restart(&[]);
        self.settle(
            SETTLE_TIMEOUT,
            &format!("127.0.0.1:{port} to rejoin"),
            false,
        );
    }

    /// Freezes a node (SIGSTOP): connections stay open and nothing is
    /// answered. After the node timeout (1 s) the others flag it as failing;
    /// a paused master's replica gets promoted. Undo with
    /// [`resume`](Self::resume). The guard's waits skip paused nodes.
    ///
    /// # Panics
    ///
    /// When `port` is not a node of this cluster.
    pub fn pause(&mut self, port: u16) {
        self.node_mut(port).pause();
    }

    /// Lets a [paused](Self::pause) node run again (SIGCONT).
    ///
    /// # Panics
    ///
    /// When `port` is not a node of this cluster.
    pub fn resume(&mut self, port: u16) {
        self.node_mut(port).resume();
    }

    /// A node's log so far.
    ///
    /// # Panics
    ///
    /// When `port` is not a node of this cluster.
    pub fn log(&self, port: u16) -> String {
        self.node(port).log()
    }

    /// Waits until [`check`](Self::check) passes; returns the settled view.
    fn settle(&self, timeout: Duration, what: &str, full: bool) -> Topology {
        node::poll_until(timeout, || self.check(full))
            .unwrap_or_else(|e| self.fail(&format!("waited for {what}: {e}")))
    }

    /// One look at the cluster: every live node reports `cluster_state:ok`
    /// with all slots served, all live nodes see the same slot map, none is
    /// flagged as failed by another, every live replica's link is up, and with
    /// `full`, every master has exactly one replica. Returns the view of the
    /// first live node.
    fn check(&self, full: bool) -> Result<Topology, String> {
        let live: Vec<u16> = self.live_ports();
        let mut first: Option<(u16, Topology)> = None;
        for &port in &live {
            let info = resp::call(port, self.password(), &["CLUSTER", "INFO"])?.text()?;
            for (field, want) in [
                ("cluster_state", "ok"),
                ("cluster_slots_assigned", "16384"),
                ("cluster_slots_ok", "16384"),
            ] {
                let got = info_field(&info, field);
                if got != Some(want) {
                    return Err(format!("127.0.0.1:{port} reports {field}:{got:?}"));
                }
            }
            let nodes = resp::call(port, self.password(), &["CLUSTER", "NODES"])?.text()?;
            let view = Topology::parse(&nodes)?;
            if let Some(failed) = view
                .entries()
                .iter()
                .find(|entry| entry.is_failed && live.contains(&entry.port))
            {
                return Err(format!(
                    "127.0.0.1:{port} flags the running 127.0.0.1:{} as failed",
                    failed.port
                ));
            }
            let me = view
                .entry(port)
                .ok_or_else(|| format!("127.0.0.1:{port} does not list itself in CLUSTER NODES"))?;
            if !me.is_master {
                let replication =
                    resp::call(port, self.password(), &["INFO", "replication"])?.text()?;
                let link = info_field(&replication, "master_link_status");
                if link != Some("up") {
                    return Err(format!(
                        "the replica 127.0.0.1:{port} has master_link_status:{link:?}"
                    ));
                }
            }
            match &first {
                None => first = Some((port, view)),
                Some((first_port, first_view)) => {
                    if first_view.owners() != view.owners() {
                        return Err(format!(
                            "127.0.0.1:{first_port} and 127.0.0.1:{port} disagree on the slot map: \
                             {:?} against {:?}",
                            first_view.owners(),
                            view.owners()
                        ));
                    }
                }
            }
        }
        let (_, view) = first.ok_or("no node is running")?;
        if full {
            for (_, master) in view.owners() {
                let replicas = view.replicas_of(master).len();
                if replicas != 1 {
                    return Err(format!(
                        "the master 127.0.0.1:{master} has {replicas} replicas, not 1"
                    ));
                }
            }
        }
        Ok(view)
    }

    /// The cluster as the first node that answers sees it.
    fn view(&self) -> Topology {
        let mut errors = Vec::new();
        for port in self.live_ports() {
            match resp::call(port, self.password(), &["CLUSTER", "NODES"]).and_then(|r| r.text()) {
                Ok(text) => match Topology::parse(&text) {
                    Ok(view) => return view,
                    Err(e) => errors.push(e),
                },
                Err(e) => errors.push(e),
            }
        }
        self.fail(&format!("no node answered CLUSTER NODES: {errors:?}"))
    }

    /// The password of the guard's admin commands, if the nodes require one.
    fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.is_live())
            .map(Node::port)
            .collect()
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|node| node.port() == port)
            .unwrap_or_else(|| panic!("127.0.0.1:{port} is not a node of this cluster"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .unwrap_or_else(|| panic!("127.0.0.1:{port} is not a node of this cluster"))
    }

    fn fail(&self, message: &str) -> ! {
        panic!("RedisCluster: {message}\n{}", node::logs(self.nodes.iter()))
    }
}
