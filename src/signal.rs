//! A wake-up with exactly one waiter: a flag and an `AtomicWaker`.
//!
//! A mailbox has one waiter, its connection (or the connection's
//! hibernation cell). `tokio::sync::Notify` would also work, but each wait
//! on it is a 64-byte future the connection's task would carry; this is
//! polled in place.

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

#[derive(Default)]
pub struct Signal {
    waker: AtomicWaker,
    set: AtomicBool,
}

impl Signal {
    /// Wakes the waiter, or lets its next poll return at once.
    pub fn notify(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready once after each `notify` (several before a poll count once).
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A notify between the check and the registration woke nobody.
        if self.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_notify_before_or_during_the_wait_is_seen_once() {
        let signal = Arc::new(Signal::default());
        signal.notify();
        signal.notify();
        std::future::poll_fn(|cx| signal.poll(cx)).await;
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { std::future::poll_fn(|cx| signal.poll(cx)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the two notifies counted once");
        signal.notify();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
    }
}
