//! Shutdown is passed in, never hard-wired: [`Shutdown`] is a broadcast latch that the signal
//! handler (or a test) trips; the HTTP server and the actors watch it, and
//! [`crate::startup::Application`] then stops intake, drains writers and closes pools under
//! one deadline.

use tokio::sync::watch;

/// A latch that is tripped once and observed by many.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`Shutdown::trigger`] has been called (at once if it already was).
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|triggered| *triggered).await;
        }
    }
}

/// Resolves on SIGTERM or SIGINT and says which.
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler can be installed");
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_triggered_even_if_they_subscribe_late() {
        let shutdown = Shutdown::new();
        let early = tokio::spawn(shutdown.wait());
        shutdown.trigger();
        early.await.unwrap();
        shutdown.wait().await;
        assert!(shutdown.is_triggered());
    }
}
