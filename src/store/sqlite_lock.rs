//! One `mcss serve` per SQLite file: [`ServeLock`].
//!
//! Role: SQLite has no leases (`leases.rs` is PostgreSQL only), so a second `serve` on the
//! same file would silently run every calendar twice. `serve` therefore takes an exclusive,
//! non-blocking lock on a file beside the database (`<database>-serve.lock`) before it
//! migrates anything, and holds it until the process ends; a second `serve` is refused at
//! start with one line naming the file. The lock is the operating system's (`flock`), so a
//! killed process leaves no stale lock behind. It is a sidecar file, not the database itself,
//! because SQLite's own locks on the database are a different kind that must not be mixed
//! with these. The command line (`mcss accounts add`, `reconcile`, …) does not take it: it
//! runs beside `serve` as it always did, its writers kept apart by the outbox claims.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use secrecy::ExposeSecret as _;

use super::{sqlite_file, unusable, StoreError};
use crate::config::Settings;

/// Held for the life of `serve`; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    path: PathBuf,
}

impl ServeLock {
    /// Takes the lock of the SQLite file `settings` names; `None` for PostgreSQL and for an
    /// in-memory database. Refused ([`StoreError::Unusable`], naming `DATABASE_URL`) when
    /// another `serve` holds it.
    pub fn acquire(settings: &Settings) -> Result<Option<ServeLock>, StoreError> {
        let Some(database) = sqlite_file(settings.database_url.expose_secret())? else {
            return Ok(None);
        };
        let mut name = database.clone().into_os_string();
        name.push("-serve.lock");
        let path = PathBuf::from(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                unusable(format!(
                    "cannot create the lock file {}: {e}",
                    path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ServeLock { _file: file, path })),
            Err(TryLockError::WouldBlock) => Err(unusable(format!(
                "another `mcss serve` already runs on the SQLite database {} (it holds {}); SQLite serves one replica — stop the other one, or use PostgreSQL for several",
                database.display(),
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(unusable(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}
