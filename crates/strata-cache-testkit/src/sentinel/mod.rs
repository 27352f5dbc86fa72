//! [`RedisSentinel`]: a throwaway Sentinel deployment (one master, two
//! replicas, three sentinels) for tests of Sentinel clients: discovery,
//! failover, a master that moves.
//!
//! Every process is a `redis-server` on a free port of 127.0.0.1 with its own
//! temporary directory and log, no persistence, killed when the guard drops.
//! Each sentinel has a writable configuration file in its directory (Sentinel
//! rewrites it on every change of the master). A one-second
//! `down-after-milliseconds` makes a dead master noticed quickly; the guard
//! waits, after each operation, until all sentinels agree on the master and
//! that node answers as one.
//!
//! [`RedisSentinel::with_password`] protects the data nodes with a password:
//! they require it of clients, replicas send it to their master, the
//! sentinels send it to every data node (`sentinel auth-pass`), and
//! [`RedisSentinel::url`] carries it. The sentinels themselves stay open, as
//! clients ask them without credentials.
//!
//! Admin commands go through [`crate::resp`]; what a sentinel says is read in
//! `ask.rs`, the command lines are built in `config.rs`.

mod ask;
mod config;

use std::path::Path;
use std::time::Duration;

use crate::node::{self, Node};
use crate::resp::{self, info_field};

/// The name the sentinels monitor the master under.
const SERVICE: &str = "strata";
/// Replicas of the master at creation.
const REPLICAS: usize = 2;
/// Sentinels; a quorum of 2 of them marks the master down.
const SENTINELS: usize = 3;
/// How long a new or restarted deployment has to settle: sentinels find each
/// other through hello messages sent every 2 s.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover may take: detection (1 s), agreement, election and
/// promotion take a few seconds, but a split vote among the sentinels costs a
/// new election after twice the failover timeout (10 s).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A master, two replicas and three sentinels monitoring them as `strata`,
/// on 127.0.0.1, every process killed when the guard drops (after a panic
/// too).
///
/// [`new`](Self::new) starts data nodes anyone may use;
/// [`with_password`](Self::with_password) starts data nodes that require a
/// password, for tests of a client's credentials.
///
/// # Example
///
/// ```no_run
/// use strata_cache_testkit::RedisSentinel;
///
/// let mut sentinel = RedisSentinel::new();
/// let url = sentinel.url(); // redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/strata
/// let old = sentinel.master_port();
/// let new = sentinel.kill_master(); // returns after the failover
/// assert_ne!(new, old);
/// sentinel.restart(old); // back as a replica of `new`
/// # drop(url);
/// ```
///
/// # Panics
///
/// Every method that starts or stops a process panics when the deployment
/// does not settle in time (30 s); the message says what was awaited and
/// holds the last lines of every process's log.
#[derive(Debug)]
pub struct RedisSentinel {
    /// The data nodes: the master at creation, then its replicas.
    data: Vec<Node>,
    sentinels: Vec<Node>,
    /// The password the data nodes require, if any.
    password: Option<String>,
}

impl Default for RedisSentinel {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisSentinel {
    /// Starts the master, its two replicas and three sentinels; returns once
    /// the replicas are in sync and every sentinel sees the master, both
    /// replicas and the two other sentinels.
    ///
    /// # Panics
    ///
    /// See [the type's docs](RedisSentinel#panics).
    #[must_use]
    pub fn new() -> Self {
        Self::start(None)
    }

    /// Like [`new`](Self::new), with the data nodes protected by `password`:
    /// they require `AUTH <password>` of clients (`--requirepass`), replicas
    /// authenticate to the master with it (`--masterauth`), and the sentinels
    /// to every data node (`sentinel auth-pass strata <password>`). The
    /// sentinels require no password. The guard's own commands authenticate
    /// too, so failover, restart and pause work as without a password, and
    /// [`url`](Self::url) carries it:
    /// `redis+sentinel://:<password>@.../strata`, the password being the
    /// data nodes'.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use strata_cache_testkit::RedisSentinel;
    ///
    /// let sentinel = RedisSentinel::with_password("s3cret");
    /// assert!(sentinel.url().starts_with("redis+sentinel://:s3cret@127.0.0.1:"));
    /// assert!(sentinel.url().ends_with("/strata"));
    /// ```
    ///
    /// # Panics
    ///
    /// When `password` is empty or starts with `--`; otherwise see [the
    /// type's docs](RedisSentinel#panics).
    #[must_use]
    pub fn with_password(password: impl Into<String>) -> Self {
        let password = password.into();
        node::check_password("RedisSentinel", &password);
        Self::start(Some(password))
    }

    fn start(password: Option<String>) -> Self {
        let data_args =
            |dir: &Path, ports: &[u16]| config::data_args(dir, ports, password.as_deref());
        let master = Node::launch("data node", 1, data_args, &[]);
        let master_port = master.port();
        let mut data = vec![master];
        for _ in 0..REPLICAS {
            let node = Node::launch("data node", 1, data_args, &config::replicaof(master_port));
            data.push(node);
        }
        let mut group = Self {
            data,
            sentinels: Vec::new(),
            password,
        };
        // Replicas first: a sentinel learns them from the master's INFO.
        group.settle("the replicas to sync", |group| {
            group.check_replication(master_port)
        });
        for _ in 0..SENTINELS {
            let sentinel = Node::launch(
                "sentinel",
                1,
                |dir, ports| {
                    config::sentinel_args(dir, ports[0], master_port, group.password.as_deref())
                },
                &[],
            );
            group.sentinels.push(sentinel);
        }
        group.settle("the sentinels to see every node", |group| {
            group.check(master_port)
        });
        group
    }

    /// `redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/strata`.
    /// With a [password](Self::with_password),
    /// `redis+sentinel://:<password>@.../strata`, the password
    /// percent-encoded.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinel_ports()
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!(
            "redis+sentinel://{}{}/{SERVICE}",
            node::url_credentials(self.password.as_deref()),
            sentinels.join(",")
        )
    }

    /// The name the sentinels monitor the master under: `strata`.
    pub fn service_name(&self) -> &'static str {
        SERVICE
    }

    /// The ports of the three sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(Node::port).collect()
    }

    /// The ports of the three data nodes (master and replicas, killed ones
    /// included), in creation order: the first was the master at creation.
    pub fn ports(&self) -> Vec<u16> {
        self.data.iter().map(Node::port).collect()
    }

    /// The port of the current master, as a sentinel names it
    /// (`SENTINEL get-master-addr-by-name strata`).
    ///
    /// # Panics
    ///
    /// When no sentinel answers.
    pub fn master_port(&self) -> u16 {
        let mut errors = Vec::new();
        for port in self.live_sentinels() {
            match ask::master_of(port) {
                Ok(master) => return master,
                Err(e) => errors.push(e),
            }
        }
        self.fail(&format!("no sentinel named the master: {errors:?}"))
    }

    /// The ports of the current master's replicas, sorted, as a sentinel
    /// lists them, without those it sees as down or disconnected and those
    /// this guard killed.
    ///
    /// # Panics
    ///
    /// When no sentinel answers.
    pub fn replica_ports(&self) -> Vec<u16> {
        let mut errors = Vec::new();
        for sentinel in self.live_sentinels() {
            match ask::replicas_seen_by(sentinel) {
                Ok(replicas) => {
                    let mut ports: Vec<u16> = replicas
                        .into_iter()
                        .filter(|(port, flags)| ask::healthy(flags) && self.is_started(*port))
                        .map(|(port, _)| port)
                        .collect();
                    ports.sort_unstable();
                    return ports;
                }
                Err(e) => errors.push(e),
            }
        }
        self.fail(&format!("no sentinel listed the replicas: {errors:?}"))
    }

    /// Kills (SIGKILL) the current master and waits until every sentinel
    /// names another one and that node answers `ROLE` as a master. Returns
    /// the new master's port.
    ///
    /// # Panics
    ///
    /// When the failover does not complete within 30 s.
    pub fn kill_master(&mut self) -> u16 {
        let old = self.master_port();
        self.node_mut(old).kill();
        node::poll_until(FAILOVER_TIMEOUT, || self.new_master(old)).unwrap_or_else(|e| {
            self.fail(&format!(
                "killed the master 127.0.0.1:{old}; no replica took over: {e}"
            ))
        })
    }

    /// Asks a sentinel for a failover (`SENTINEL FAILOVER strata`) and waits
    /// until every sentinel names another master and that node answers
    /// `ROLE` as a master. Returns the new master's port.
    ///
    /// The old master stays alive. The sentinels list it as a replica at
    /// once, but reconfigure it into one only some seconds later (Sentinel
    /// waits 8 s after a node last changed role before it corrects one that
    /// claims to be a master); until then it still accepts writes from
    /// clients that did not follow, writes the resync then drops.
    ///
    /// # Panics
    ///
    /// When the failover does not complete within 30 s.
    pub fn failover(&mut self) -> u16 {
        let old = self.master_port();
        let Some(&sentinel) = self.live_sentinels().first() else {
            self.fail("failover: no sentinel is running");
        };
        let mut asked = false;
        let outcome = node::poll_until(FAILOVER_TIMEOUT, || {
            if !asked {
                // -NOGOODSLAVE while the sentinels still judge the replicas
                // (after a restart, say): asked again on the next poll.
                match resp::call(sentinel, None, &["SENTINEL", "FAILOVER", SERVICE]) {
                    Ok(_) => asked = true,
                    Err(e) if e.contains("INPROG") => asked = true,
                    Err(e) => return Err(format!("SENTINEL FAILOVER: {e}")),
                }
            }
            self.new_master(old)
        });
        outcome.unwrap_or_else(|e| {
            self.fail(&format!(
                "asked 127.0.0.1:{sentinel} to fail over from 127.0.0.1:{old}: {e}"
            ))
        })
    }

    /// Starts a killed data node again as a replica of the current master
    /// (`--replicaof`, as an operator would: started alone it would come back
    /// as an empty master until the sentinels reconfigure it, 8 s later), and
    /// waits until it is in sync and every sentinel lists it as a healthy
    /// replica. Does nothing when the node runs.
    ///
    /// # Panics
    ///
    /// When `port` is not a data node of this deployment, or the node is not
    /// back within 30 s.
    pub fn restart(&mut self, port: u16) {
        assert!(
            self.data.iter().any(|node| node.port() == port),
            "127.0.0.1:{port} is not a data node of this deployment"
        );
        if self.is_started(port) {
            return;
        }
        let master = self.master_port();
        self.node_mut(port).restart(&config::replicaof(master));
        self.settle(&format!("127.0.0.1:{port} to rejoin"), |group| {
            group.check(master)
        });
    }

    /// Freezes a process, data node or sentinel (SIGSTOP): connections stay
    /// open and nothing is answered. A paused master is seen as down after 1 s
    /// and failed over. Undo with [`resume`](Self::resume).
    ///
    /// # Panics
    ///
    /// When `port` is not a process of this deployment.
    pub fn pause(&mut self, port: u16) {
        self.node_mut(port).pause();
    }

    /// Lets a [paused](Self::pause) process run again (SIGCONT).
    ///
    /// # Panics
    ///
    /// When `port` is not a process of this deployment.
    pub fn resume(&mut self, port: u16) {
        self.node_mut(port).resume();
    }

    /// A process's log so far.
    ///
    /// # Panics
    ///
    /// When `port` is not a process of this deployment.
    pub fn log(&self, port: u16) -> String {
        self.nodes()
            .find(|node| node.port() == port)
            .unwrap_or_else(|| panic!("127.0.0.1:{port} is not a process of this deployment"))
            .log()
    }

    /// `Ok(port)` once every live sentinel names the same master other than
    /// `old` and that node answers `ROLE` as a master.
    fn new_master(&self, old: u16) -> Result<u16, String> {
        let mut named = Vec::new();
        for sentinel in self.live_sentinels() {
            named.push((sentinel, ask::master_of(sentinel)?));
        }
        let Some(&(_, master)) = named.first() else {
            return Err("no sentinel is running".to_owned());
        };
        if master == old || named.iter().any(|&(_, m)| m != master) {
            return Err(format!("the sentinels name (sentinel, master) {named:?}"));
        }
        match ask::role_of(master, self.password.as_deref())? {
            role if role == "master" => Ok(master),
            role => Err(format!("127.0.0.1:{master} answers ROLE with {role}")),
        }
    }

    /// The replication of every live data node other than `master` is up,
    /// with `master` as its master.
    fn check_replication(&self, master: u16) -> Result<(), String> {
        for port in self.live_replicas(master) {
            let info =
                resp::call(port, self.password.as_deref(), &["INFO", "replication"])?.text()?;
            let want = master.to_string();
            let fields = [
                ("role", "slave"),
                ("master_port", want.as_str()),
                ("master_link_status", "up"),
            ];
            for (field, want) in fields {
                let got = info_field(&info, field);
                if got != Some(want) {
                    return Err(format!("127.0.0.1:{port} reports {field}:{got:?}"));
                }
            }
        }
        Ok(())
    }

    /// [`check_replication`](Self::check_replication), and every live
    /// sentinel names `master`, lists every live replica as healthy and sees
    /// every other live sentinel.
    fn check(&self, master: u16) -> Result<(), String> {
        self.check_replication(master)?;
        let sentinels = self.live_sentinels();
        for &sentinel in &sentinels {
            let named = ask::master_of(sentinel)?;
            if named != master {
                return Err(format!("127.0.0.1:{sentinel} names the master {named}"));
            }
            let seen = ask::replicas_seen_by(sentinel)?;
            for replica in self.live_replicas(master) {
                if !seen
                    .iter()
                    .any(|(port, flags)| *port == replica && ask::healthy(flags))
                {
                    return Err(format!(
                        "127.0.0.1:{sentinel} does not list 127.0.0.1:{replica} as a healthy \
                         replica: {seen:?}"
                    ));
                }
            }
            let peers = ask::peers_seen_by(sentinel)?;
            let healthy_peers = peers.iter().filter(|flags| ask::healthy(flags)).count();
            if healthy_peers + 1 < sentinels.len() {
                return Err(format!(
                    "127.0.0.1:{sentinel} sees {healthy_peers} other sentinels: {peers:?}"
                ));
            }
        }
        Ok(())
    }

    fn settle(&self, what: &str, check: impl Fn(&Self) -> Result<(), String>) {
        if let Err(e) = node::poll_until(SETTLE_TIMEOUT, || check(self)) {
            self.fail(&format!("waited for {what}: {e}"));
        }
    }

    fn live_sentinels(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .filter(|node| node.is_live())
            .map(Node::port)
            .collect()
    }

    fn live_replicas(&self, master: u16) -> Vec<u16> {
        self.data
            .iter()
            .filter(|node| node.is_live() && node.port() != master)
            .map(Node::port)
            .collect()
    }

    fn is_started(&self, port: u16) -> bool {
        self.nodes()
            .any(|node| node.port() == port && node.is_started())
    }

    fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.data.iter().chain(&self.sentinels)
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.data
            .iter_mut()
            .chain(&mut self.sentinels)
            .find(|node| node.port() == port)
            .unwrap_or_else(|| panic!("127.0.0.1:{port} is not a process of this deployment"))
    }

    fn fail(&self, message: &str) -> ! {
        panic!("RedisSentinel: {message}\n{}", node::logs(self.nodes()))
    }
}
