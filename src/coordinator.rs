//! The optional Redis coordinator (fred): shared state that only matters when more than one
//! replica runs — webhook de-duplication across replicas and health reporting.
//!
//! Without `REDIS_URL` the service runs as a single replica and everything here is skipped.
//! Every command has a timeout, so a slow Redis degrades `/health/detailed`, never a request.
//! A Redis that cannot be reached at start is a [`ConfigError`] naming `REDIS_URL` and its
//! host (never the password the URL may hold).

use std::time::Duration;

use fred::prelude::*;
use fred::types::{Expiration, SetOptions};
use secrecy::{ExposeSecret, SecretString};

use crate::config::ConfigError;

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// `REDIS_URL` cannot be used: not a Redis URL, or nothing answers there.
    #[error("{0}")]
    Unusable(#[from] ConfigError),
    #[error("Redis command failed: {0}")]
    Command(#[from] fred::error::Error),
}

impl CoordinatorError {
    fn unusable(problem: String) -> Self {
        Self::Unusable(ConfigError::new("REDIS_URL", problem))
    }
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
        let place = describe(url.expose_secret());
        let config = Config::from_url(url.expose_secret()).map_err(|e| {
            CoordinatorError::unusable(format!("is not a usable Redis URL: {}", e.details()))
        })?;
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
            .map_err(|e| {
                CoordinatorError::unusable(format!("is not a usable Redis URL: {}", e.details()))
            })?;
        match tokio::time::timeout(timeout, pool.init()).await {
            Ok(Ok(_)) => Ok(Self { pool }),
            Ok(Err(e)) => {
                // The reconnect policy keeps trying in the background unless told to stop.
                let _ = pool.quit().await;
                Err(CoordinatorError::unusable(format!(
                    "{place} is unreachable: {}",
                    io_words(e.details())
                )))
            }
            Err(_) => {
                let _ = pool.quit().await;
                Err(CoordinatorError::unusable(format!(
                    "{place} did not answer within {} s",
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

/// "Redis at host:port", from a URL that may hold a password.
fn describe(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "Redis at {}:{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(6379)
        ),
        Err(_) => "Redis".to_owned(),
    }
}

/// fred reports an I/O failure as the `Debug` of `std::io::Error`
/// (`Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }`): keep the
/// message, which is what a person wants to read.
fn io_words(details: &str) -> String {
    details
        .split_once("message: \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(message, _)| message.to_owned())
        .unwrap_or_else(|| crate::config::one_line(details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_failure_is_told_in_its_own_words_and_the_password_never() {
        let debug = r#"Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#;

        assert_eq!(io_words(debug), "Connection refused");
        assert_eq!(io_words("Timeout"), "Timeout");
        assert_eq!(
            describe("redis://:hunter2@cache.internal:6380/0"),
            "Redis at cache.internal:6380"
        );
    }
}
