//! Live resharding: [`RedisCluster::migrate_slots`] moves slots between
//! masters, slot by slot and key batch by key batch, the way `redis-cli
//! --cluster reshard` does, while clients keep reading and writing.
//!
//! During a slot's move the source answers `-ASK` for keys it no longer holds
//! and the target accepts them after `ASKING`; once the slot is assigned, the
//! old owner answers `-MOVED`. Those redirections are what a test of a cluster
//! client wants to provoke.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::{RedisCluster, SETTLE_TIMEOUT, slot};
use crate::node;
use crate::resp::{Conn, Reply};

/// Keys asked for, and moved, per `MIGRATE`: redis-cli's default pipeline.
const BATCH: &str = "100";
/// `MIGRATE`'s own timeout, in milliseconds (redis-cli's default).
const MIGRATE_TIMEOUT_MS: &str = "5000";
/// Attempts of one `MIGRATE` batch: a loaded machine can time it out once.
const MIGRATE_ATTEMPTS: usize = 3;

impl RedisCluster {
    /// Moves every slot of `slots` to the master on `to_master_port`, with
    /// their keys, while the cluster serves traffic. For each slot not already
    /// there: `CLUSTER SETSLOT <slot> IMPORTING <source-id>` on the target,
    /// `CLUSTER SETSLOT <slot> MIGRATING <target-id>` on the source, then
    /// `CLUSTER GETKEYSINSLOT <slot> 100` and `MIGRATE 127.0.0.1 <port> "" 0
    /// 5000 REPLACE KEYS ...` until the source holds no key of the slot, then
    /// `CLUSTER SETSLOT <slot> NODE <target-id>` on the target, the source and
    /// every other master. Returns once every running node sees the new owner.
    /// On a cluster [with a password](RedisCluster::with_password) every
    /// connection authenticates, and `MIGRATE` carries `AUTH <password>`: the
    /// source logs in to the target with it.
    ///
    /// It blocks (about a few milliseconds per slot plus up to a second for
    /// the replicas to hear of it); from async code call it through
    /// `tokio::task::spawn_blocking`. `REPLACE` differs from redis-cli's
    /// default: the source's copy is the one clients were served, so it wins
    /// over a stray key of the same name on the target.
    ///
    /// A master left without slots turns into a replica of the target (Redis
    /// 7 does so when `cluster-allow-replica-migration` is on, the default).
    ///
    /// # Panics
    ///
    /// When a slot is not below 16384, when `to_master_port` is not a running
    /// master, when a command fails (three tries for `MIGRATE`), or when the
    /// nodes do not agree on the new owner within 30 s; the message holds
    /// every node's log.
    pub fn migrate_slots(&self, slots: RangeInclusive<u16>, to_master_port: u16) {
        assert!(
            *slots.end() < slot::SLOTS,
            "slot {} is not below 16384",
            slots.end()
        );
        let view = self.view();
        let to = to_master_port;
        let target_id = match view.entry(to) {
            Some(entry) if entry.is_master && !entry.is_failed && self.node(to).is_live() => {
                entry.id.clone()
            }
            _ => self.fail(&format!(
                "migrate_slots: 127.0.0.1:{to} is not a running master"
            )),
        };
        // Masters known before the move; the move changes no master's role
        // except, at the very end, a source left without slots.
        let masters: Vec<u16> = view
            .entries()
            .iter()
            .filter(|entry| entry.is_master && !entry.is_failed)
            .map(|entry| entry.port)
            .filter(|&port| self.nodes.iter().any(|n| n.port() == port && n.is_live()))
            .collect();
        let mut admin = Admin {
            conns: HashMap::new(),
            password: self.password(),
        };
        for slot in slots.clone() {
            let Some(from) = view.owner(slot) else {
                self.fail(&format!("migrate_slots: no master serves slot {slot}"));
            };
            if from == to {
                continue;
            }
            let source_id = match view.entry(from) {
                Some(entry) => entry.id.clone(),
                None => self.fail(&format!("migrate_slots: 127.0.0.1:{from} is not listed")),
            };
            let step = Step {
                slot: slot.to_string(),
                from,
                source_id,
                to,
                target_id: target_id.clone(),
            };
            if let Err(e) = admin.move_slot(&step, &masters) {
                self.fail(&format!(
                    "migrate_slots: moving slot {slot} from 127.0.0.1:{from} to 127.0.0.1:{to}: {e}"
                ));
            }
        }
        let outcome = node::poll_until(SETTLE_TIMEOUT, || {
            let view = self.check(false)?;
            match slots.clone().find(|&slot| view.owner(slot) != Some(to)) {
                Some(slot) => Err(format!("slot {slot} is served by {:?}", view.owner(slot))),
                None => Ok(()),
            }
        });
        if let Err(e) = outcome {
            self.fail(&format!(
                "migrate_slots: the nodes do not agree that 127.0.0.1:{to} serves {slots:?}: {e}"
            ));
        }
    }
}

/// One slot to move.
struct Step {
    slot: String,
    from: u16,
    source_id: String,
    to: u16,
    target_id: String,
}

/// One open connection per node, reopened after an error: a migration sends
/// a dozen commands per slot, too many to open a connection for each.
struct Admin<'a> {
    conns: HashMap<u16, Conn>,
    /// The nodes' password, if they require one.
    password: Option<&'a str>,
}

impl Admin<'_> {
    fn call<S: AsRef<[u8]>>(&mut self, port: u16, args: &[S]) -> Result<Reply, String> {
        let mut conn = match self.conns.remove(&port) {
            Some(conn) => conn,
            None => Conn::open(port, self.password)?,
        };
        let reply = conn.call(args)?;
        // Kept only after a clean reply: after an error it may be out of step.
        self.conns.insert(port, conn);
        Ok(reply)
    }

    fn move_slot(&mut self, step: &Step, masters: &[u16]) -> Result<(), String> {
        let slot = step.slot.as_str();
        self.call(
            step.to,
            &["CLUSTER", "SETSLOT", slot, "IMPORTING", &step.source_id],
        )?;
        self.call(
            step.from,
            &["CLUSTER", "SETSLOT", slot, "MIGRATING", &step.target_id],
        )?;
        loop {
            let keys: Vec<Vec<u8>> = self
                .call(step.from, &["CLUSTER", "GETKEYSINSLOT", slot, BATCH])?
                .array()?
                .into_iter()
                .filter_map(|key| match key {
                    Reply::Bulk(Some(key)) => Some(key),
                    _ => None,
                })
                .collect();
            if keys.is_empty() {
                break;
            }
            self.migrate(step, keys)?;
        }
        // Target first: once it owns the slot it serves the keys without
        // ASKING, before the source starts answering MOVED.
        let owner = ["CLUSTER", "SETSLOT", slot, "NODE", &step.target_id];
        self.call(step.to, &owner)?;
        self.call(step.from, &owner)?;
        for &master in masters {
            if master != step.to && master != step.from {
                self.call(master, &owner)?;
            }
        }
        Ok(())
    }

    fn migrate(&mut self, step: &Step, keys: Vec<Vec<u8>>) -> Result<(), String> {
        let to = step.to.to_string();
        let mut args: Vec<Vec<u8>> = [
            "MIGRATE",
            "127.0.0.1",
            &to,
            "",
            "0",
            MIGRATE_TIMEOUT_MS,
            "REPLACE",
        ]
        .iter()
        .map(|arg| arg.as_bytes().to_vec())
        .collect();
        // The source opens its own connection to the target, which wants the
        // password as much as we do.
        if let Some(password) = self.password {
            args.push(b"AUTH".to_vec());
            args.push(password.as_bytes().to_vec());
        }
        args.push(b"KEYS".to_vec());
        args.extend(keys);
        let mut last = String::new();
        for _ in 0..MIGRATE_ATTEMPTS {
            // `+OK`, or `+NOKEY` when the keys expired or were deleted since
            // GETKEYSINSLOT: both leave them off the source.
            match self.call(step.from, &args) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }
}
