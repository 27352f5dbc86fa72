//! Runs a future that never waits (an in-process cache call) without an
//! executor: polled once with a no-op waker, it must be ready.

use std::future::Future;
use std::task::{Context, Poll, Waker};

/// The output of `future`, which must be ready on its first poll.
pub(crate) fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-process cache call waited"),
    }
}
