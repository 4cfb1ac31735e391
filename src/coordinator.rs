//! The optional Redis coordinator (fred): shared state that only matters when more than one
//! replica runs — webhook de-duplication across replicas and health reporting.
//!
//! Without `REDIS_URL` the service runs as a single replica and everything here is skipped.
//! Every command has a timeout, so a slow Redis degrades `/health/detailed`, never a request.

use std::time::Duration;

use fred::prelude::*;
use fred::types::{Expiration, SetOptions};
use secrecy::{ExposeSecret, SecretString};

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("REDIS_URL is not a usable Redis URL: {0}")]
    BadUrl(String),
    #[error("Redis is unreachable: {0}")]
    Unreachable(String),
    #[error("Redis command failed: {0}")]
    Command(#[from] fred::error::Error),
}

/// A small pool of Redis connections.
#[derive(Clone)]
pub struct Coordinator {
    pool: Pool,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Coordinator")
    }
}

const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

impl Coordinator {
    /// Connects, failing within `timeout` when Redis is not there.
    pub async fn connect(url: &SecretString, timeout: Duration) -> Result<Self, CoordinatorError> {
        let config = Config::from_url(url.expose_secret())
            .map_err(|e| CoordinatorError::BadUrl(e.details().to_owned()))?;
        let pool = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = COMMAND_TIMEOUT;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 10_000, 2))
            .build_pool(2)
            .map_err(|e| CoordinatorError::BadUrl(e.details().to_owned()))?;
        match tokio::time::timeout(timeout, pool.init()).await {
            Ok(Ok(_)) => Ok(Self { pool }),
            Ok(Err(e)) => Err(CoordinatorError::Unreachable(e.details().to_owned())),
            Err(_) => {
                let _ = pool.quit().await;
                Err(CoordinatorError::Unreachable(format!(
                    "no answer within {}s",
                    timeout.as_secs()
                )))
            }
        }
    }

    pub async fn ping(&self) -> Result<(), CoordinatorError> {
        let _: String = self.pool.ping(None).await?;
        Ok(())
    }

    /// True the first time `key` is seen within `ttl`: used to drop a webhook ping that
    /// another replica (or a Google retry) already handled.
    pub async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, CoordinatorError> {
        let set: Option<String> = self
            .pool
            .set(
                format!("mcss:seen:{key}"),
                "1",
                Some(Expiration::EX(ttl.as_secs().max(1) as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.is_some())
    }

    pub async fn quit(&self) {
        let _ = self.pool.quit().await;
    }
}
