//! The high-availability guards against real processes: [`RedisCluster`]
//! (start, slot hashing, failover, live migration) and [`RedisSentinel`]
//! (start, failover by a crash and on request), each also with a password.
//!
//! Clients here are `redis-cli` subprocesses (`-c` follows `MOVED` and
//! `ASK`), so the guards are checked by a program that is not theirs. Every
//! test owns its deployment; dropping it must leave no process behind.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_cache_testkit::{RedisCluster, RedisSentinel};

/// A password a URL must percent-encode and a configuration file must quote.
const PASSWORD: &str = "p@ss w:rd";
/// [`PASSWORD`] as the URLs carry it.
const ENCODED: &str = "p%40ss%20w%3Ard";

/// Runs `redis-cli -p <port> [-c] <args>` and returns its trimmed output.
fn cli(port: u16, cluster: bool, args: &[&str]) -> String {
    cli_as(None, port, cluster, args)
}

/// [`cli`] authenticated with `password` (in `REDISCLI_AUTH`), if any.
fn cli_as(password: Option<&str>, port: u16, cluster: bool, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    command.arg("-p").arg(port.to_string());
    if cluster {
        command.arg("-c");
    }
    if let Some(password) = password {
        command.env("REDISCLI_AUTH", password);
    }
    let output = command.args(args).output().expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Feeds `script` (one command a line) to one `redis-cli` connection and
/// returns its output lines.
fn cli_script(port: u16, cluster: bool, script: &str) -> Vec<String> {
    cli_script_as(None, port, cluster, script)
}

/// [`cli_script`] authenticated with `password`, if any.
fn cli_script_as(password: Option<&str>, port: u16, cluster: bool, script: &str) -> Vec<String> {
    let mut command = Command::new("redis-cli");
    command.arg("-p").arg(port.to_string());
    if cluster {
        command.arg("-c");
    }
    if let Some(password) = password {
        command.env("REDISCLI_AUTH", password);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .expect("redis-cli reads its script");
    let output = child.wait_with_output().expect("redis-cli ends");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The first line a node answers to an unauthenticated `PING`.
fn ping_unauthenticated(port: u16) -> String {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    (&stream).write_all(b"PING\r\n").expect("sends PING");
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .expect("answers PING");
    line.trim().to_owned()
}

fn refuses_connections(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = f();
    eprintln!("{what}: {:?}", start.elapsed());
    value
}

#[test]
fn cluster_starts_serves_keys_and_dies_with_its_guard() {
    let cluster = timed("RedisCluster::new", RedisCluster::new);
    let ports = cluster.ports();
    let masters = cluster.masters();
    assert_eq!(ports.len(), 6);
    assert_eq!(masters.len(), 3);
    let seeds: Vec<String> = masters.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    assert_eq!(
        cluster.url(),
        format!("redis+cluster://{}", seeds.join(","))
    );

    // Written through one node, read through another: redirections work.
    assert_eq!(cli(ports[0], true, &["SET", "greeting", "hello"]), "OK");
    assert_eq!(cli(ports[5], true, &["GET", "greeting"]), "hello");
    let slot = RedisCluster::slot_of("greeting");
    assert_eq!(
        cli(cluster.master_of_slot(slot), false, &["GET", "greeting"]),
        "hello"
    );

    drop(cluster);
    for port in ports {
        assert!(
            refuses_connections(port),
            "127.0.0.1:{port} outlived the guard"
        );
    }
}

#[test]
fn slot_of_agrees_with_cluster_keyslot() {
    let cluster = RedisCluster::new();
    let port = cluster.ports()[0];
    for key in [
        "foo",
        "strata:v1:product:42",
        "{user1000}.following",
        "{user1000}.followers",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "{unclosed",
        "",
        "clé-unicode",
    ] {
        let keyslot = cli(port, false, &["CLUSTER", "KEYSLOT", key]);
        assert_eq!(
            RedisCluster::slot_of(key).to_string(),
            keyslot,
            "slot of {key:?}"
        );
    }
}

#[test]
fn killing_a_master_promotes_its_replica_with_the_data() {
    let mut cluster = RedisCluster::new();
    let key = "survivor";
    let slot = RedisCluster::slot_of(key);
    let master = cluster.master_of_slot(slot);
    // WAIT on the writing connection: returns once the replica has the key.
    let replies = cli_script(master, false, &format!("SET {key} still-here\nWAIT 1 0\n"));
    assert_eq!(replies, ["OK", "1"]);

    let killed = timed("kill_master_of_slot", || cluster.kill_master_of_slot(slot));
    assert_eq!(killed, master);
    assert!(refuses_connections(killed));
    let promoted = cluster.master_of_slot(slot);
    assert_ne!(promoted, killed);
    assert!(cluster.masters().contains(&promoted));
    assert!(!cluster.masters().contains(&killed));
    assert_eq!(cli(promoted, false, &["GET", key]), "still-here");

    timed("RedisCluster::restart", || cluster.restart(killed));
    assert_eq!(cluster.master_of_slot(slot), promoted);
    let role = cli(killed, false, &["ROLE"]);
    assert!(role.starts_with("slave"), "{role}");
    assert_eq!(cluster.masters().len(), 3);
}

#[test]
fn migrating_a_slot_moves_its_keys_under_traffic() {
    let cluster = RedisCluster::new();
    let slot = RedisCluster::slot_of("{moving}");
    let source = cluster.master_of_slot(slot);
    let target = *cluster
        .masters()
        .iter()
        .find(|&&port| port != source)
        .expect("three masters");
    let keys: String = (0..500)
        .map(|i| format!("SET {{moving}}:{i} value-{i}\n"))
        .collect();
    let replies = cli_script(source, false, &keys);
    assert!(replies.iter().all(|reply| reply == "OK"), "{replies:?}");

    // A writer that keeps incrementing a counter in the slot through one
    // `redis-cli -c` connection, which follows ASK and MOVED as the slot moves.
    let mut writer = Command::new("redis-cli")
        .args(["-c", "-p", &source.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli runs");
    let mut stdin = writer.stdin.take().expect("piped");
    let mut stdout = BufReader::new(writer.stdout.take().expect("piped"));
    let mut redirections = 0;
    let mut incr = |stdin: &mut std::process::ChildStdin| {
        stdin
            .write_all(b"INCR {moving}:counter\n")
            .expect("the writer reads");
        loop {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("the writer answers");
            // redis-cli -c reports each ASK or MOVED it followed.
            if line.starts_with("-> Redirected") {
                redirections += 1;
                continue;
            }
            return line.trim().to_owned();
        }
    };
    assert_eq!(incr(&mut stdin), "1");

    let mut increments = 1u64;
    std::thread::scope(|scope| {
        let migration = scope.spawn(|| {
            timed("migrate_slots (1 slot, 501 keys)", || {
                cluster.migrate_slots(slot..=slot, target);
            });
        });
        while !migration.is_finished() {
            increments += 1;
            assert_eq!(incr(&mut stdin), increments.to_string());
        }
    });
    increments += 1;
    assert_eq!(incr(&mut stdin), increments.to_string());
    drop(stdin);
    assert!(writer.wait().expect("redis-cli ends").success());

    assert_eq!(cluster.master_of_slot(slot), target);
    assert_eq!(cli(target, false, &["GET", "{moving}:0"]), "value-0");
    assert_eq!(cli(target, false, &["GET", "{moving}:499"]), "value-499");
    assert_eq!(
        cli(target, false, &["GET", "{moving}:counter"]),
        increments.to_string()
    );
    assert_eq!(
        cli(
            source,
            false,
            &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]
        ),
        "0"
    );
    eprintln!("{increments} increments, {redirections} redirections");
}

#[test]
fn sentinel_promotes_a_replica_when_the_master_dies() {
    let mut sentinel = timed("RedisSentinel::new", RedisSentinel::new);
    let sentinels: Vec<String> = sentinel
        .sentinel_ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    assert_eq!(
        sentinel.url(),
        format!("redis+sentinel://{}/strata", sentinels.join(","))
    );
    assert_eq!(sentinel.service_name(), "strata");
    let ports = sentinel.ports();
    let old = sentinel.master_port();
    assert_eq!(old, ports[0]);
    assert_eq!(sentinel.replica_ports(), {
        let mut replicas = ports[1..].to_vec();
        replicas.sort_unstable();
        replicas
    });

    let new = timed("RedisSentinel::kill_master", || sentinel.kill_master());
    assert_ne!(new, old);
    assert!(ports[1..].contains(&new));
    assert_eq!(sentinel.master_port(), new);
    assert_eq!(cli(new, false, &["SET", "after-failover", "yes"]), "OK");

    timed("RedisSentinel::restart", || sentinel.restart(old));
    assert!(sentinel.replica_ports().contains(&old));
    assert_eq!(sentinel.master_port(), new);
}

#[test]
fn sentinel_fails_over_on_request() {
    let mut sentinel = RedisSentinel::new();
    let all = sentinel.ports();
    let old = sentinel.master_port();
    let new = timed("RedisSentinel::failover", || sentinel.failover());
    assert_ne!(new, old);
    assert_eq!(sentinel.master_port(), new);
    assert_eq!(cli(new, false, &["SET", "after-failover", "yes"]), "OK");
    // The old master lives on, to be turned into a replica by the sentinels.
    assert_eq!(cli(old, false, &["PING"]), "PONG");

    let sentinels = sentinel.sentinel_ports();
    drop(sentinel);
    for port in all.into_iter().chain(sentinels) {
        assert!(
            refuses_connections(port),
            "127.0.0.1:{port} outlived the guard"
        );
    }
}

#[test]
fn a_password_protected_cluster_fails_over_restarts_and_migrates() {
    let mut cluster = timed("RedisCluster::with_password", || {
        RedisCluster::with_password(PASSWORD)
    });
    let auth = Some(PASSWORD);
    let seeds: Vec<String> = cluster
        .masters()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    assert_eq!(
        cluster.url(),
        format!("redis+cluster://:{ENCODED}@{}", seeds.join(","))
    );
    for port in cluster.ports() {
        let reply = ping_unauthenticated(port);
        assert!(reply.starts_with("-NOAUTH"), "127.0.0.1:{port}: {reply}");
    }

    // A failover: the replica, which replicated with --masterauth, has the key.
    let key = "survivor";
    let slot = RedisCluster::slot_of(key);
    let master = cluster.master_of_slot(slot);
    let replies = cli_script_as(
        auth,
        master,
        false,
        &format!("SET {key} still-here\nWAIT 1 0\n"),
    );
    assert_eq!(replies, ["OK", "1"]);
    let killed = timed("kill_master_of_slot (password)", || {
        cluster.kill_master_of_slot(slot)
    });
    let promoted = cluster.master_of_slot(slot);
    assert_ne!(promoted, killed);
    assert_eq!(cli_as(auth, promoted, false, &["GET", key]), "still-here");
    // Back as a replica: the guard waits for its link to the master, up only
    // once it authenticated.
    timed("RedisCluster::restart (password)", || {
        cluster.restart(killed)
    });
    let role = cli_as(auth, killed, false, &["ROLE"]);
    assert!(role.starts_with("slave"), "{role}");

    // A migration: MIGRATE logs in to the target with the password.
    let moving = RedisCluster::slot_of("{moving}");
    let source = cluster.master_of_slot(moving);
    let target = *cluster
        .masters()
        .iter()
        .find(|&&port| port != source)
        .expect("three masters");
    let keys: String = (0..250)
        .map(|i| format!("SET {{moving}}:{i} value-{i}\n"))
        .collect();
    let replies = cli_script_as(auth, source, false, &keys);
    assert!(replies.iter().all(|reply| reply == "OK"), "{replies:?}");
    timed("migrate_slots (password, 250 keys)", || {
        cluster.migrate_slots(moving..=moving, target);
    });
    assert_eq!(cluster.master_of_slot(moving), target);
    assert_eq!(
        cli_as(auth, target, false, &["GET", "{moving}:249"]),
        "value-249"
    );
    assert_eq!(
        cli_as(
            auth,
            source,
            false,
            &["CLUSTER", "COUNTKEYSINSLOT", &moving.to_string()]
        ),
        "0"
    );
    // And through any node, following redirections.
    assert_eq!(
        cli_as(auth, killed, true, &["GET", "{moving}:0"]),
        "value-0"
    );
}

#[test]
fn a_password_protected_sentinel_deployment_fails_over_and_restarts() {
    let mut sentinel = timed("RedisSentinel::with_password", || {
        RedisSentinel::with_password(PASSWORD)
    });
    let auth = Some(PASSWORD);
    let sentinels: Vec<String> = sentinel
        .sentinel_ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    assert_eq!(
        sentinel.url(),
        format!("redis+sentinel://:{ENCODED}@{}/strata", sentinels.join(","))
    );
    // The data nodes want the password; the sentinels do not.
    for port in sentinel.ports() {
        let reply = ping_unauthenticated(port);
        assert!(reply.starts_with("-NOAUTH"), "127.0.0.1:{port}: {reply}");
    }
    for port in sentinel.sentinel_ports() {
        assert_eq!(ping_unauthenticated(port), "+PONG");
    }
    // The sentinels reached the replicas through the master's INFO, which
    // takes `sentinel auth-pass`.
    assert_eq!(sentinel.replica_ports().len(), 2);

    let old = sentinel.master_port();
    let new = timed("RedisSentinel::kill_master (password)", || {
        sentinel.kill_master()
    });
    assert_ne!(new, old);
    assert_eq!(
        cli_as(auth, new, false, &["SET", "after-kill", "yes"]),
        "OK"
    );
    timed("RedisSentinel::restart (password)", || {
        sentinel.restart(old)
    });
    assert!(sentinel.replica_ports().contains(&old));

    let newer = timed("RedisSentinel::failover (password)", || sentinel.failover());
    assert_ne!(newer, new);
    assert_eq!(sentinel.master_port(), newer);
    assert_eq!(cli_as(auth, newer, false, &["GET", "after-kill"]), "yes");
}
