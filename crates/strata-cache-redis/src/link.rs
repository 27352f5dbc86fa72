//! [`Link`]: one multiplexed Redis connection kept alive by a background task.
//!
//! The task connects, watches for the loss of the connection (a RESP3
//! disconnection push, or a caller reporting a dropped-connection error) and
//! reconnects with exponential backoff, forever. Callers never connect
//! themselves: [`Link::run`] takes the current connection, or fails at once
//! with the last connection error while Redis is down, and bounds the whole
//! call by the operation timeout. That is what keeps every cache call within
//! its timeout whatever Redis does.
//!
//! Why not redis-rs's `ConnectionManager`: it connects on demand, so callers
//! wait on connection attempts (and their retries) instead of failing fast, and
//! it cannot run our own set-up (the backplane's SUBSCRIBE) before a new
//! connection is handed out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionInfo, PushInfo, PushKind, RedisResult};
use strata_cache::{Error, ErrorKind, Result};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error;

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
pub(crate) type OnConnect =
    Arc<dyn Fn(MultiplexedConnection, bool) -> BoxFuture<RedisResult<()>> + Send + Sync>;

/// Receives the server's pushes (pub/sub messages) of every connection.
pub(crate) type OnPush = Arc<dyn Fn(PushInfo) + Send + Sync>;

/// What callers see of the connection.
#[derive(Clone)]
enum State {
    /// The first attempt (or the first after a loss) is under way: callers
    /// wait for it, within their timeout.
    Connecting,
    /// Connected; `generation` tells this connection from later ones.
    Up {
        conn: MultiplexedConnection,
        generation: u64,
    },
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
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Starts the background task; returns at once, connected or not.
    ///
    /// Errors only when called outside a Tokio runtime.
    pub(crate) fn start(
        info: ConnectionInfo,
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
        let client = Client::open(info).map_err(|e| error::from_redis(e, &target))?;
        let shared = Arc::new(Shared {
            state: watch::Sender::new(State::Connecting),
            lost_generation: AtomicU64::new(0),
            lost: Notify::new(),
            address: address_of(&target),
            target,
            operation_timeout,
        });
        let task = runtime.spawn(maintain(
            Arc::clone(&shared),
            client,
            connect_timeout,
            on_connect,
            on_push,
        ));
        Ok(Self { shared, task })
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
        F: FnOnce(MultiplexedConnection) -> Fut,
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
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let shared = &*self.shared;
        let call = async {
            let (conn, generation) = self.connection().await?;
            op(conn).await.map_err(|e| {
                if e.is_unrecoverable_error() || e.is_connection_dropped() {
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
    async fn connection(&self) -> Result<(MultiplexedConnection, u64)> {
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

    fn usable(state: &State) -> Option<Result<(MultiplexedConnection, u64)>> {
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

/// The background task: connect, wait for the loss, reconnect, forever.
async fn maintain(
    shared: Arc<Shared>,
    client: Client,
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
            &client,
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
    client: &Client,
    generation: u64,
    connect_timeout: Duration,
    on_connect: Option<&OnConnect>,
    on_push: Option<OnPush>,
    reconnect: bool,
) -> Result<MultiplexedConnection> {
    // The push sender holds a weak reference: a connection must not keep the
    // link alive after its last handle is gone.
    let weak = Arc::downgrade(shared);
    let push = move |info: PushInfo| -> std::result::Result<(), ()> {
        if info.kind == PushKind::Disconnection {
            if let Some(shared) = weak.upgrade() {
                shared.report_lost(generation);
            }
        } else if let Some(on_push) = &on_push {
            on_push(info);
        }
        Ok(())
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        // The operation timeout of `Link::run` bounds every call instead.
        .set_response_timeout(None)
        .set_push_sender(push);
    let target = &shared.target;
    let attempt = async {
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
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
