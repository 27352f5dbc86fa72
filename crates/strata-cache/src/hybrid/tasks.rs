//! [`Tasks`]: the background tasks of one cache, and how they are kept
//! running.
//!
//! - the *listener* applies the backplane's notices (`Engine::apply`);
//! - the *heartbeat* publishes this instance's heartbeats and watches for
//!   silence (`notices`);
//! - the *replay worker* carries queued changes out (`propagate`);
//! - the *flush* adds L1 hits to the `metrics` counter every second.
//!
//! Each task holds only a `Weak` to the engine and a shutdown receiver whose
//! sender lives in the engine: when the last handle is dropped, every task
//! ends at once. Each runs in the span that was current when the cache was
//! built. Each holds a guard whose drop (the task ended, or its runtime shut
//! down) clears its flag; [`Engine::ensure_tasks`], called on slow paths,
//! starts what is missing on the current runtime. A listener that had to be
//! restarted may have missed notices: its restart is a gap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::watch;
use tracing::Instrument;

use super::engine::Engine;
use super::propagate::Propagator;
use super::stats::FLUSH_EVERY;
use crate::backplane::Subscription;

/// The flags and shutdown signal of a cache's tasks.
#[derive(Debug)]
pub(crate) struct Tasks {
    span: tracing::Span,
    shutdown: watch::Sender<()>,
    listener: AtomicBool,
    listener_started: AtomicBool,
    heartbeat: AtomicBool,
    replay: AtomicBool,
    flush: AtomicBool,
}

impl Tasks {
    pub(crate) fn new(span: tracing::Span) -> Self {
        Self {
            span,
            shutdown: watch::Sender::new(()),
            listener: AtomicBool::new(false),
            listener_started: AtomicBool::new(false),
            heartbeat: AtomicBool::new(false),
            replay: AtomicBool::new(false),
            flush: AtomicBool::new(false),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Listener,
    Heartbeat,
    Replay,
    Flush,
}

impl Which {
    fn flag(self, tasks: &Tasks) -> &AtomicBool {
        match self {
            Which::Listener => &tasks.listener,
            Which::Heartbeat => &tasks.heartbeat,
            Which::Replay => &tasks.replay,
            Which::Flush => &tasks.flush,
        }
    }
}

/// Clears its task's flag when the task ends, however it ends.
struct Guard {
    engine: Weak<Engine>,
    which: Which,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        self.which
            .flag(&engine.tasks)
            .store(false, Ordering::Release);
        if let (Which::Listener, Some(notices)) = (self.which, &engine.notices) {
            // Nobody applies notices any more: L1 must not be trusted, and
            // the moved epoch sends the next hit to the slow path, which
            // starts a listener again.
            notices.set_cut_off();
            engine.gap("the backplane listener stopped (its runtime ended?)");
        }
    }
}

impl Engine {
    /// Starts, on the current runtime, the tasks that are not running.
    pub(crate) fn ensure_tasks(engine: &Arc<Engine>) {
        engine.clock.ensure_ticking();
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let tasks = &engine.tasks;
        spawn_once(engine, Which::Flush, flush);
        if engine.l2.is_configured() || engine.notices.is_some() {
            spawn_once(engine, Which::Replay, Propagator::replay);
        }
        let Some(notices) = &engine.notices else {
            return;
        };
        if !tasks.listener.load(Ordering::Acquire) {
            // Subscribe now, before returning: a notice published right after
            // this call must reach us.
            let subscription = notices.backplane().subscribe();
            let restarted = tasks.listener_started.swap(true, Ordering::AcqRel);
            spawn_once(engine, Which::Listener, move |weak, shutdown| {
                listen(weak, subscription, shutdown)
            });
            if restarted {
                engine.gap("the backplane listener was restarted");
            }
        }
        spawn_once(engine, Which::Heartbeat, heartbeat);
    }
}

fn spawn_once<F, Fut>(engine: &Arc<Engine>, which: Which, task: F)
where
    F: FnOnce(Weak<Engine>, watch::Receiver<()>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks = &engine.tasks;
    if which.flag(tasks).swap(true, Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(engine);
    let guard = Guard {
        engine: weak.clone(),
        which,
    };
    let body = task(weak, tasks.shutdown.subscribe());
    tokio::spawn(
        async move {
            let _guard = guard;
            body.await;
        }
        .instrument(tasks.span.clone()),
    );
}

/// Applies the backplane's events until the cache is gone.
async fn listen(
    engine: Weak<Engine>,
    mut subscription: Subscription,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => return,
            event = subscription.recv() => event,
        };
        let Some(engine) = engine.upgrade() else {
            return;
        };
        match event {
            Some(event) => engine.apply(event),
            None => {
                tracing::error!(
                    instance = %engine.id,
                    "the backplane subscription ended; L1 is no longer kept coherent"
                );
                engine.gap("the backplane subscription ended");
                return;
            }
        }
    }
}

/// Publishes heartbeats every quarter of the trust window and watches for
/// this instance's own silence.
async fn heartbeat(engine: Weak<Engine>, mut shutdown: watch::Receiver<()>) {
    let Some(period) = engine
        .upgrade()
        .and_then(|e| e.notices.as_ref().map(|n| n.trust_window() / 4))
    else {
        return;
    };
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = interval.tick() => {}
        }
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let Some(notices) = &engine.notices else {
            return;
        };
        match notices.check_silence() {
            Some(true) => engine
                .gap("this instance does not hear its own heartbeats: cut off from the backplane"),
            Some(false) => engine.gap("this instance hears the backplane again"),
            None => {}
        }
        notices.heartbeat().await;
    }
}

/// Adds the L1 hits to the `metrics` counter every [`FLUSH_EVERY`] (the hit
/// path does not touch the metric), until the cache is gone.
async fn flush(engine: Weak<Engine>, mut shutdown: watch::Receiver<()>) {
    let mut interval = tokio::time::interval(FLUSH_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = interval.tick() => {}
        }
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.stats.flush_metrics();
    }
}
