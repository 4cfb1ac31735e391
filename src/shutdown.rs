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

/// SIGTERM and SIGINT handlers, installed when this is built (so a signal sent the moment
/// the service reports ready is caught, not fatal).
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Resolves on the next SIGTERM or SIGINT and says which.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
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
