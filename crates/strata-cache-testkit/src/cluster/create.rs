//! Forming a [`RedisCluster`]: starting its nodes, their command line, and
//! `redis-cli --cluster create`, the operator's tool, rather than `CLUSTER
//! MEET` and `CLUSTER ADDSLOTS` by hand: the cluster is built the way users
//! build theirs, replica placement included.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{MASTERS, RedisCluster, SETTLE_TIMEOUT};
use crate::node::{self, Node};

/// How long `redis-cli --cluster create` may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

impl RedisCluster {
    /// Starts six nodes (with `password` when given), forms the cluster and
    /// waits until it settles: [`new`](RedisCluster::new) and
    /// [`with_password`](RedisCluster::with_password).
    pub(super) fn start(password: Option<String>) -> Self {
        let nodes = (0..MASTERS * 2)
            .map(|_| {
                Node::launch(
                    "cluster node",
                    2,
                    |dir, ports| node_args(dir, ports, password.as_deref()),
                    &[],
                )
            })
            .collect();
        let mut cluster = Self {
            nodes,
            seeds: Vec::new(),
            password,
        };
        cluster.create();
        let view = cluster.settle(SETTLE_TIMEOUT, "the new cluster to settle", true);
        cluster.seeds = view
            .entries()
            .iter()
            .filter(|entry| entry.is_master)
            .map(|entry| entry.port)
            .collect();
        cluster.seeds.sort_unstable();
        cluster
    }

    /// Runs `redis-cli --cluster create` on the six fresh nodes.
    pub(super) fn create(&self) {
        let output = self.nodes[0].dir().join("cluster-create.log");
        let outcome = run_cli_create(&output, &self.ports(), self.password());
        let printed = std::fs::read_to_string(&output).unwrap_or_default();
        if let Err(e) = outcome {
            self.fail(&format!(
                "redis-cli --cluster create failed: {e}\n{printed}"
            ));
        }
    }
}

/// The command line of a cluster node; `ports` holds its port and its bus
/// port. The cluster bus needs no password: nodes gossip unauthenticated.
pub(super) fn node_args(dir: &Path, ports: &[u16], password: Option<&str>) -> Vec<String> {
    let mut args = node::data_node_args(dir, ports[0], password);
    let nodes_conf = dir.join("nodes.conf");
    // A start that failed on a taken port may have written one for that port.
    let _ = std::fs::remove_file(&nodes_conf);
    let nodes_conf = nodes_conf.display().to_string();
    args.extend(
        [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &ports[1].to_string(),
            "--cluster-config-file",
            &nodes_conf,
            // Failures detected in about a second, not the default 15.
            "--cluster-node-timeout",
            "1000",
            // A replica may always be promoted, however long its link was
            // down: a test that restarts nodes should not end with slots no
            // replica may take over.
            "--cluster-replica-validity-factor",
            "0",
            "--cluster-announce-ip",
            "127.0.0.1",
        ]
        .map(str::to_owned),
    );
    args
}

/// `redis-cli --cluster create` with one replica per master, its output in
/// `output`, killed after [`CREATE_TIMEOUT`]. A `password` goes in
/// `REDISCLI_AUTH` rather than `-a`: it stays off the process list, and
/// redis-cli does not print its warning about `-a`.
fn run_cli_create(output: &Path, ports: &[u16], password: Option<&str>) -> Result<(), String> {
    let file = std::fs::File::create(output)
        .and_then(|file| Ok((file.try_clone()?, file)))
        .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let mut command = Command::new("redis-cli");
    if let Some(password) = password {
        command.env("REDISCLI_AUTH", password);
    }
    let mut child = command
        .arg("--cluster")
        .arg("create")
        .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(file.0)
        .stderr(file.1)
        .spawn()
        .map_err(|e| {
            format!("cannot run redis-cli ({e}): install it (apt-get install redis-tools)")
        })?;
    let deadline = Instant::now() + CREATE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("redis-cli exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-cli did not finish within {CREATE_TIMEOUT:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("cannot wait for redis-cli: {e}")),
        }
    }
}
