//! Reads from PostgreSQL streaming replicas, with read-your-writes.
//!
//! [`Replicated`] holds the primary's pool and the replicas' pools (each opened with
//! [`forge_migration::connect`], directly or through a pooler). Every repository call
//! takes whichever pool the caller hands it, so routing is the caller's choice, made per
//! read:
//! - [`Replicated::primary`] for writes, and for reads that must be current;
//! - [`Replicated::lagging`] for reads that tolerate a little lag (lists, dashboards,
//!   event tails): the replicas in turn, the primary when there are none;
//! - [`Replicated::at_least`] for a read that must see the caller's own earlier write:
//!   after the write, [`Replicated::token`] gives a [`WalToken`] (the primary's WAL
//!   position, which covers every transaction committed before it was taken); a read with
//!   it goes to a replica that has replayed that far, waiting up to
//!   [`Replicated::max_wait`] for one, and to the primary otherwise. The token is small
//!   text (`"0/3000148"`): an API server can hand it to its client (a header, a cookie)
//!   so the client's next request, served anywhere, reads its write.
//!
//! A replica refuses writes (SQLSTATE 25006, [`ForgeError::Db`](crate::ForgeError::Db)); a replica that cannot
//! be asked how far it has replayed is skipped for [`Replicated::at_least`].
//!
//! On SQLite there are no replicas: a [`Replicated`] with none serves everything from the
//! primary and its tokens are [`WalToken::ZERO`].

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DbBackend};

use crate::error::Result;

/// How long [`Replicated::at_least`] waits for a replica by default.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(250);

/// A position in the primary's write-ahead log (PostgreSQL's `pg_lsn`): a read with it
/// sees every transaction that committed before it was taken. Displayed and parsed as
/// PostgreSQL writes it (`"16/B374D848"`); serialized as that text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalToken(u64);

impl WalToken {
    /// The start of the log: every database has replayed it.
    pub const ZERO: Self = Self(0);

    /// The position as a number (PostgreSQL's `pg_lsn - '0/0'`).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for WalToken {
    fn from(lsn: u64) -> Self {
        Self(lsn)
    }
}

impl fmt::Display for WalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why a text is not a [`WalToken`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a WAL position (expected two hex numbers as in \"16/B374D848\"): {0:?}")]
pub struct ParseWalTokenError(String);

impl FromStr for WalToken {
    type Err = ParseWalTokenError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let bad = || ParseWalTokenError(s.chars().take(40).collect());
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let hex = |part: &str| {
            (!part.is_empty() && part.len() <= 8)
                .then(|| u32::from_str_radix(part, 16).ok())
                .flatten()
        };
        match (hex(hi), hex(lo)) {
            (Some(hi), Some(lo)) => Ok(Self((u64::from(hi) << 32) | u64::from(lo))),
            _ => Err(bad()),
        }
    }
}

impl serde::Serialize for WalToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WalToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which database served a read routed by [`Replicated::at_least`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServedBy {
    /// The replica at this index of [`Replicated::new`]'s list.
    Replica(usize),
    /// The primary: no replica had replayed far enough within the wait.
    Primary,
}

/// Where a read goes, from [`Replicated::at_least`].
#[derive(Clone, Copy, Debug)]
pub struct Routed<'a> {
    /// The pool to run the read on.
    pub db: &'a DatabaseConnection,
    /// Which database that is.
    pub served_by: ServedBy,
    /// How long the routing waited for a replica to replay.
    pub waited: Duration,
}

/// A primary and its streaming replicas (see the module docs).
#[derive(Debug)]
pub struct Replicated {
    primary: DatabaseConnection,
    replicas: Vec<DatabaseConnection>,
    next: AtomicUsize,
    max_wait: Duration,
}

impl Replicated {
    /// The primary's pool and the replicas' pools, waiting up to [`DEFAULT_MAX_WAIT`] for
    /// a replica in [`Replicated::at_least`].
    pub fn new(primary: DatabaseConnection, replicas: Vec<DatabaseConnection>) -> Self {
        Self {
            primary,
            replicas,
            next: AtomicUsize::new(0),
            max_wait: DEFAULT_MAX_WAIT,
        }
    }

    /// The same, waiting up to `max_wait` for a replica (zero: only a replica that has
    /// already replayed far enough, else the primary at once).
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// How long [`Replicated::at_least`] waits for a replica.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The primary's pool: writes, and reads that must be current.
    pub fn primary(&self) -> &DatabaseConnection {
        &self.primary
    }

    /// The replicas' pools, in the order given.
    pub fn replicas(&self) -> &[DatabaseConnection] {
        &self.replicas
    }

    /// A pool for a read that tolerates lag: the next replica in turn, or the primary when
    /// there is none.
    pub fn lagging(&self) -> &DatabaseConnection {
        match self.replicas.len() {
            0 => &self.primary,
            n => &self.replicas[self.next.fetch_add(1, Ordering::Relaxed) % n],
        }
    }

    /// The primary's current WAL position: taken after a write has committed, it covers
    /// that write (one round trip to the primary). [`WalToken::ZERO`] on SQLite.
    ///
    /// # Errors
    /// [`ForgeError::Db`](crate::ForgeError::Db) when the primary cannot be asked.
    pub async fn token(&self) -> Result<WalToken> {
        // The insert position, not `pg_current_wal_lsn()` (the write position): with
        // `synchronous_commit = off` a commit returns while its record may still sit in
        // the WAL buffers, behind the write position.
        match position(&self.primary, "pg_current_wal_insert_lsn()").await? {
            Some(token) => Ok(token),
            None => Ok(WalToken::ZERO),
        }
    }

    /// A pool for a read that must see everything up to `token`: the first replica (in
    /// turn) that has replayed it, asked again every few milliseconds for up to
    /// [`Replicated::max_wait`], else the primary. A replica that fails to answer is
    /// skipped (the primary serves).
    ///
    /// # Errors
    /// None today; the `Result` leaves room for routing that must ask the primary.
    pub async fn at_least(&self, token: WalToken) -> Result<Routed<'_>> {
        let started = Instant::now();
        if self.replicas.is_empty() || self.primary.get_database_backend() != DbBackend::Postgres {
            return Ok(self.routed_to_primary(started));
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut pause = Duration::from_millis(1);
        loop {
            for offset in 0..self.replicas.len() {
                let index = (first + offset) % self.replicas.len();
                let replica = &self.replicas[index];
                match position(replica, "pg_last_wal_replay_lsn()").await {
                    Ok(Some(replayed)) if replayed >= token => {
                        return Ok(Routed {
                            db: replica,
                            served_by: ServedBy::Replica(index),
                            waited: started.elapsed(),
                        });
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(replica = index, error = %err, "forge: replica did not answer; skipped");
                    }
                }
            }
            let left = self.max_wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(self.routed_to_primary(started));
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    fn routed_to_primary(&self, started: Instant) -> Routed<'_> {
        Routed {
            db: &self.primary,
            served_by: ServedBy::Primary,
            waited: started.elapsed(),
        }
    }
}

/// `function` (a `pg_lsn` function) evaluated on `db`, in one simple-protocol message (so
/// it works through a transaction pooler). `None` on SQLite, and when the function gives
/// NULL (`pg_last_wal_replay_lsn()` on a server that is not a standby).
async fn position(db: &DatabaseConnection, function: &str) -> Result<Option<WalToken>> {
    #[cfg(feature = "postgres")]
    if db.get_database_backend() == DbBackend::Postgres {
        use sea_orm::sqlx::{self, Row};
        let row = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SELECT ({function} - '0/0'::pg_lsn)::text"
        )))
        .fetch_one(db.get_postgres_connection_pool())
        .await
        .map_err(crate::scoped::driver_error)?;
        let text: Option<String> = row.try_get(0).map_err(crate::scoped::driver_error)?;
        return text
            .map(|n| {
                n.parse::<u64>().map(WalToken).map_err(|_| {
                    crate::error::ForgeError::Db(sea_orm::DbErr::Custom(format!(
                        "{function} gave a position that is not a number: {n}"
                    )))
                })
            })
            .transpose();
    }
    let _ = (db, function);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_read_and_print_as_postgres_does() {
        let token: WalToken = "16/B374D848".parse().unwrap();
        assert_eq!(token.as_u64(), (0x16 << 32) | 0xB374_D848);
        assert_eq!(token.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<WalToken>().unwrap(), WalToken::ZERO);
        assert!("0/3000148".parse::<WalToken>().unwrap() < token);
        for bad in ["", "16", "16/", "/1", "x/1", "1/123456789", "1/2/3", "-1/0"] {
            assert!(bad.parse::<WalToken>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, "\"16/B374D848\"");
        assert_eq!(serde_json::from_str::<WalToken>(&json).unwrap(), token);
        assert!(serde_json::from_str::<WalToken>("\"nope\"").is_err());
    }
}
