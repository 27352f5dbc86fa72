//! [`Link`]: one connection to the deployment kept alive by a background task:
//! a multiplexed connection to one server (given, or the master the sentinels
//! name), or a redis-rs cluster connection, which routes each command to the
//! node owning its slot and repairs its own node connections.
//!
//! The task connects, watches for the loss of the connection (a RESP3
//! disconnection push, a caller reporting a dropped-connection or read-only
//! error, or the sentinels announcing a new master) and reconnects with
//! exponential backoff, forever. Callers never connect themselves:
//! [`Link::run`] takes the current connection, or fails at once with the last
//! connection error while Redis is down, and bounds the whole call by the
//! operation timeout. That is what keeps every cache call within its timeout
//! whatever Redis does, redirections and failovers included.
//!
//! Why not redis-rs's `ConnectionManager`: it connects on demand, so callers
//! wait on connection attempts (and their retries) instead of failing fast, and
//! it cannot run our own set-up (the backplane's SUBSCRIBE) before a new
//! connection is handed out.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, Pipeline, PushInfo,
    PushKind, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use strata_cache::{Error, ErrorKind, Result};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error;
use crate::options::Endpoint;

/// First pause after a failed connection attempt.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between connection attempts: a Redis that comes back is in
/// use again within a second, at the cost of one cheap attempt per second
/// while it is down.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// A boxed future, as returned by an [`OnConnect`] hook.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs on every new connection before callers get it (the backplane
/// subscribes here). `reconnect` is false only for a first attempt that
/// succeeded at once: then nothing can have been missed.
pub(crate) type OnConnect = Arc<dyn Fn(Conn, bool) -> BoxFuture<RedisResult<()>> + Send + Sync>;

/// Receives the server's pushes (pub/sub messages) of every connection; on a
/// cluster, also the loss of a node's connection (`PushKind::Disconnection`),
/// which the cluster connection repairs by itself.
pub(crate) type OnPush = Arc<dyn Fn(PushInfo) + Send + Sync>;

/// A connection to the deployment: one server (single or the sentinels'
/// master), or a cluster connection that routes each command to the node
/// owning its key's slot, follows MOVED and ASK redirections, refreshes the
/// slot map when it changes and reconnects to nodes on its own.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    /// True on a cluster, where a pipeline's or script's keys must share one
    /// slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// What callers see of the connection.
#[derive(Clone)]
enum State {
    /// The first attempt (or the first after a loss) is under way: callers
    /// wait for it, within their timeout.
    Connecting,
    /// Connected; `generation` tells this connection from later ones.
    Up { conn: Conn, generation: u64 },
    /// Down; callers fail at once with this error while the task retries.
    Down(Error),
}

/// What the task and the callers share.
struct Shared {
    state: watch::Sender<State>,
    /// The newest connection generation found dead; the task compares it with
    /// the current one, so a late or repeated report about an older connection
    /// never tears down a newer one.
    lost_generation: AtomicU64,
    /// Wakes the task after `lost_generation` changed.
    lost: Notify,
    target: String,
    /// With sentinels: the master a `+switch-master` announced, to connect
    /// to at the next attempt instead of asking the sentinels (the one that
    /// led the failover may still name the old master for a while).
    announced: Mutex<Option<(String, u16)>>,
    /// With sentinels: the master of the current connection.
    connected_to: Mutex<Option<(String, u16)>>,
    /// True for a cluster connection, which reconnects to its nodes by itself:
    /// a failed call never makes the task rebuild it.
    self_healing: bool,
    /// `host:port` of the server, for spans.
    address: String,
    operation_timeout: Duration,
}

impl Shared {
    /// A caller or the push handler found the connection of `generation` dead.
    fn report_lost(&self, generation: u64) {
        self.lost_generation.fetch_max(generation, Ordering::AcqRel);
        self.lost.notify_one();
    }

    /// The sentinels announced `master`: unless the current connection is to
    /// it already, drop that connection and connect to `master` next.
    fn switched(&self, master: (String, u16)) {
        if self
            .connected_to
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            == Some(&master)
        {
            return;
        }
        tracing::warn!(target = %self.target, host = %master.0, port = master.1, "the sentinels switched the master; reconnecting to the new one");
        *self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(master);
        if let State::Up { generation, .. } = &*self.state.borrow() {
            self.report_lost(*generation);
        }
    }

    /// Returns once the connection of `generation` was reported dead.
    async fn wait_lost(&self, generation: u64) {
        loop {
            let notified = self.lost.notified();
            if self.lost_generation.load(Ordering::Acquire) >= generation {
                return;
            }
            notified.await;
        }
    }
}

/// A self-healing connection. Dropping it stops the background task.
pub(crate) struct Link {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// With sentinels: the task that watches them for `+switch-master`.
    watcher: Option<JoinHandle<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
    }
}

impl Link {
    /// Starts the background task; returns at once, connected or not.
    ///
    /// Errors only when called outside a Tokio runtime.
    pub(crate) fn start(
        endpoint: Endpoint,
        target: String,
        connect_timeout: Duration,
        operation_timeout: Duration,
        on_connect: Option<OnConnect>,
        on_push: Option<OnPush>,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::new(
                ErrorKind::Backend,
                "a Redis cache or backplane must be created inside a Tokio runtime: \
                 build it from async code (for example in #[tokio::main])",
            )
        })?;
        let connector = Connector::new(endpoint).map_err(|e| error::from_redis(e, &target))?;
        let shared = Arc::new(Shared {
            self_healing: matches!(connector, Connector::Cluster(_)),
            announced: Mutex::new(None),
            connected_to: Mutex::new(None),
            state: watch::Sender::new(State::Connecting),
            lost_generation: AtomicU64::new(0),
            lost: Notify::new(),
            address: address_of(&target),
            target,
            operation_timeout,
        });
        let watcher = match &connector {
            Connector::Sentinel {
                sentinels, service, ..
            } => Some(runtime.spawn(watch_sentinels(
                Arc::downgrade(&shared),
                sentinels.clone(),
                service.clone(),
            ))),
            _ => None,
        };
        let task = runtime.spawn(maintain(
            Arc::clone(&shared),
            connector,
            connect_timeout,
            on_connect,
            on_push,
        ));
        Ok(Self {
            shared,
            task,
            watcher,
        })
    }

    /// The server, as `redis://host:port/db`, for messages.
    pub(crate) fn target(&self) -> &str {
        &self.shared.target
    }

    /// True while a connection is up.
    pub(crate) fn is_connected(&self) -> bool {
        matches!(*self.shared.state.borrow(), State::Up { .. })
    }

    /// Runs `op` on the current connection, bounded by the operation timeout
    /// (waiting for a first connection included).
    ///
    /// A dropped-connection error makes the task reconnect at once.
    pub(crate) async fn run<T, F, Fut>(&self, operation: &'static str, op: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        // One span per cache operation, with OpenTelemetry's database
        // attributes; never a key or a value.
        let span = tracing::info_span!(
            "strata.redis",
            db.system.name = "redis",
            db.operation.name = operation,
            server.address = %self.shared.address,
            error.type = tracing::field::Empty,
        );
        let result = self.run_in(op).instrument(span.clone()).await;
        if let Err(error) = &result {
            span.record("error.type", error.kind().as_str());
        }
        result
    }

    async fn run_in<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let shared = &*self.shared;
        let call = async {
            let (conn, generation) = self.connection().await?;
            op(conn).await.map_err(|e| {
                // READONLY: the server was a master and is a replica now
                // (a failover the sentinels made); NOREPLICAS: it lost its
                // replicas (`min-replicas-to-write`), which a failover also
                // takes away: ask the sentinels again.
                let demoted = e.kind() == redis::ErrorKind::Server(ServerErrorKind::ReadOnly)
                    || e.code() == Some("NOREPLICAS");
                if !shared.self_healing
                    && (e.is_unrecoverable_error() || e.is_connection_dropped() || demoted)
                {
                    shared.report_lost(generation);
                }
                error::from_redis(e, &shared.target)
            })
        };
        match tokio::time::timeout(shared.operation_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(error::timeout(&shared.target, shared.operation_timeout)),
        }
    }

    /// The current connection, waiting while the task is connecting.
    async fn connection(&self) -> Result<(Conn, u64)> {
        // Fast path: one read lock and a clone of a few Arcs.
        if let Some(found) = Self::usable(&self.shared.state.borrow()) {
            return found;
        }
        let mut rx = self.shared.state.subscribe();
        let state = rx
            .wait_for(|s| !matches!(s, State::Connecting))
            .await
            .map_err(|_| error::lost(&self.shared.target))?;
        Self::usable(&state).unwrap_or_else(|| Err(error::lost(&self.shared.target)))
    }

    fn usable(state: &State) -> Option<Result<(Conn, u64)>> {
        match state {
            State::Up { conn, generation } => Some(Ok((conn.clone(), *generation))),
            State::Down(err) => Some(Err(err.clone())),
            State::Connecting => None,
        }
    }
}

/// `host:port` of a target written `redis://host:port/db`.
fn address_of(target: &str) -> String {
    let rest = target.split_once("://").map_or(target, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// How the task makes a new connection.
enum Connector {
    Single(Client),
    Cluster(Vec<ConnectionInfo>),
    /// Asks the sentinels for the master at every attempt, so that a
    /// reconnection after a failover finds the new one.
    Sentinel {
        sentinel: Sentinel,
        sentinels: Vec<ConnectionInfo>,
        service: String,
        node: SentinelNodeConnectionInfo,
        master: Box<ConnectionInfo>,
    },
}

impl Connector {
    fn new(endpoint: Endpoint) -> RedisResult<Self> {
        Ok(match endpoint {
            Endpoint::Single(info) => Self::Single(Client::open(info)?),
            Endpoint::Cluster(seeds) => Self::Cluster(seeds),
            Endpoint::Sentinel {
                sentinels,
                service,
                node,
                master,
            } => Self::Sentinel {
                sentinel: Sentinel::build(sentinels.clone())?,
                sentinels,
                service,
                node,
                master: Box::new(master),
            },
        })
    }

    /// A new connection whose pushes go to `push`, and, with sentinels, the
    /// master it is connected to: `announced` when given, else the one the
    /// sentinels name.
    async fn connect<P>(
        &mut self,
        connect_timeout: Duration,
        push: P,
        announced: Option<(String, u16)>,
    ) -> RedisResult<(Conn, Option<(String, u16)>)>
    where
        P: Fn(PushInfo) -> std::result::Result<(), ()> + Send + Sync + 'static,
    {
        // The operation timeout of `Link::run` bounds every call instead of
        // a response timeout.
        let config = |push| {
            AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(None)
                .set_push_sender(push)
        };
        match self {
            Self::Single(client) => client
                .get_multiplexed_async_connection_with_config(&config(push))
                .await
                .map(|conn| (Conn::Single(conn), None)),
            Self::Cluster(seeds) => {
                let client = ClusterClient::builder(seeds.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(connect_timeout)
                    .push_sender(move |info| push(info).map_err(|()| redis::aio::SendError))
                    .build()?;
                let conn = client.get_async_connection().await?;
                Ok((Conn::Cluster(conn), None))
            }
            Self::Sentinel {
                sentinel,
                service,
                node,
                master,
                ..
            } => {
                let client = match announced {
                    Some((host, port)) => Client::open(at(master, host, port))?,
                    None => sentinel.async_master_for(service, Some(node)).await?,
                };
                let address = match client.get_connection_info().addr() {
                    ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                        Some((host.clone(), *port))
                    }
                    _ => None,
                };
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config(push))
                    .await?;
                Ok((Conn::Single(conn), address))
            }
        }
    }
}

/// `template`'s settings (credentials, database, TLS) for the server at
/// `host:port`.
fn at(template: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    let addr = match template.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    template.clone().set_addr(addr)
}

/// Watches every sentinel's `+switch-master` events for `service`: the link
/// then drops its connection to the old master and connects to the one the
/// event names, even when the old master is still up (a manual or partial
/// failover, where it keeps accepting writes until the sentinels reconfigure
/// it, seconds later). Every sentinel is watched because they announce a
/// switch at different times: the one that led the failover announces it
/// last, about a second after the others. A connection that dies is caught
/// by the link itself; this catches the one that does not.
async fn watch_sentinels(shared: Weak<Shared>, sentinels: Vec<ConnectionInfo>, service: String) {
    let prefix = format!("{service} ");
    join_all(
        sentinels
            .into_iter()
            .map(|info| watch_sentinel(shared.clone(), info, &prefix)),
    )
    .await;
}

/// [`watch_sentinels`] for one sentinel, reconnecting to it while the link
/// lives.
async fn watch_sentinel(shared: Weak<Shared>, info: ConnectionInfo, prefix: &str) {
    let mut delay = RECONNECT_MIN_DELAY;
    loop {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RECONNECT_MAX_DELAY * 5))
            .set_push_sender(tx);
        let subscribed = async {
            let client = Client::open(info.clone())?;
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            conn.subscribe("+switch-master").await?;
            Ok::<_, redis::RedisError>(conn)
        };
        // The connection lives as long as this iteration reads its pushes.
        if let Ok(_conn) = subscribed.await {
            delay = RECONNECT_MIN_DELAY;
            while let Some(push) = rx.recv().await {
                if push.kind == PushKind::Disconnection {
                    break;
                }
                let Some(new_master) = switched_master(&push, prefix) else {
                    continue;
                };
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                shared.switched(new_master);
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX_DELAY);
    }
}

/// The new master of a `+switch-master` message for the service of `prefix`
/// (`"<service> "`): the payload is `<service> <old-ip> <old-port> <new-ip>
/// <new-port>`.
fn switched_master(push: &PushInfo, prefix: &str) -> Option<(String, u16)> {
    if push.kind != PushKind::Message {
        return None;
    }
    let Some(Value::BulkString(event)) = push.data.get(1) else {
        return None;
    };
    let event = std::str::from_utf8(event).ok()?;
    let fields: Vec<&str> = event.strip_prefix(prefix)?.split(' ').collect();
    match fields.as_slice() {
        [_, _, host, port] => Some(((*host).to_owned(), port.parse().ok()?)),
        _ => None,
    }
}

/// The background task: connect, wait for the loss, reconnect, forever.
async fn maintain(
    shared: Arc<Shared>,
    mut connector: Connector,
    connect_timeout: Duration,
    on_connect: Option<OnConnect>,
    on_push: Option<OnPush>,
) {
    let mut delay = RECONNECT_MIN_DELAY;
    let mut failures: u32 = 0;
    let mut connected_before = false;
    let mut generation = 0;
    loop {
        // Every attempt gets a new generation, so that a loss reported during
        // its set-up is not mistaken for the loss of an earlier connection.
        generation += 1;
        let attempt = connect(
            &shared,
            &mut connector,
            generation,
            connect_timeout,
            on_connect.as_ref(),
            on_push.clone(),
            connected_before || failures > 0,
        );
        match attempt.await {
            Ok(conn) => {
                if failures > 0 {
                    tracing::info!(target = %shared.target, "reconnected to Redis");
                }
                shared.state.send_replace(State::Up { conn, generation });
                connected_before = true;
                failures = 0;
                delay = RECONNECT_MIN_DELAY;
                shared.wait_lost(generation).await;
                tracing::warn!(target = %shared.target, "lost the connection to Redis; reconnecting");
                // The next attempt is the first after a loss: callers wait for it.
                shared.state.send_replace(State::Connecting);
            }
            Err(err) => {
                if failures == 0 {
                    tracing::warn!(target = %shared.target, error = %err, "cannot connect to Redis; retrying in the background");
                }
                failures = failures.saturating_add(1);
                shared.state.send_replace(State::Down(err));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX_DELAY);
            }
        }
    }
}

/// One connection attempt, set-up hook included, bounded by the connect timeout.
async fn connect(
    shared: &Arc<Shared>,
    connector: &mut Connector,
    generation: u64,
    connect_timeout: Duration,
    on_connect: Option<&OnConnect>,
    on_push: Option<OnPush>,
    reconnect: bool,
) -> Result<Conn> {
    // The push sender holds a weak reference: a connection must not keep the
    // link alive after its last handle is gone. A cluster connection repairs
    // a lost node connection itself: its loss goes to `on_push` instead.
    let weak = Arc::downgrade(shared);
    let self_healing = shared.self_healing;
    let push = move |info: PushInfo| -> std::result::Result<(), ()> {
        if info.kind == PushKind::Disconnection && !self_healing {
            if let Some(shared) = weak.upgrade() {
                shared.report_lost(generation);
            }
        } else if let Some(on_push) = &on_push {
            on_push(info);
        }
        Ok(())
    };
    let target = &shared.target;
    let announced = shared
        .announced
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let attempt = async {
        let (conn, master) = connector.connect(connect_timeout, push, announced).await?;
        *shared
            .connected_to
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = master;
        if let Some(on_connect) = on_connect {
            on_connect(conn.clone(), reconnect).await?;
        }
        Ok(conn)
    };
    match tokio::time::timeout(connect_timeout, attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(error::from_redis(e, target)),
        Err(_) => Err(error::connect_timeout(target, connect_timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &str) -> PushInfo {
        PushInfo {
            kind: PushKind::Message,
            data: vec![
                Value::BulkString(b"+switch-master".to_vec()),
                Value::BulkString(payload.as_bytes().to_vec()),
            ],
        }
    }

    #[test]
    fn a_switch_of_our_service_names_the_new_master() {
        let switched = message("orders 10.0.0.1 6379 10.0.0.2 6380");
        assert_eq!(
            switched_master(&switched, "orders "),
            Some(("10.0.0.2".to_owned(), 6380))
        );
        // Another service, a prefix of ours, a malformed event.
        assert_eq!(switched_master(&switched, "order "), None);
        assert_eq!(
            switched_master(&message("ordersx 1 2 3 4"), "orders "),
            None
        );
        assert_eq!(switched_master(&message("orders 1 2 3"), "orders "), None);
        assert_eq!(
            switched_master(&message("orders a b c port"), "orders "),
            None
        );
    }
}
