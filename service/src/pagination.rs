//! Keyset pagination with opaque cursors.
//!
//! Lists are ordered by `(created_at, id)` (newest first, or oldest first for queues) and
//! a page ends with a [`Cursor`] naming its last row. The next page starts strictly after
//! that row, so rows inserted meanwhile never shift or repeat what a reader already saw.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect, Select,
};
use uuid::Uuid;

use crate::actor::{Actor, Connection};
use crate::error::{ForgeError, Result};

/// Page size when a request gives none.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// The largest page a request may ask for.
pub const MAX_PAGE_SIZE: u64 = 200;

/// Where the previous page ended. Opaque: pass back what a [`Page`] returned.
///
/// One cursor type serves every list; it holds the last row's id as the uuid it is
/// stored as, whatever the table's typed id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    created_at: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    /// The cursor just after a row with this `created_at` and `id` (any typed id, e.g.
    /// a [`ProjectId`](forge_entity::ids::ProjectId)).
    pub fn after(created_at: DateTime<Utc>, id: impl Into<Uuid>) -> Self {
        Self {
            created_at,
            id: id.into(),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nanoseconds: SQLite keeps the full precision the application wrote, and a cursor
        // must compare equal to its own row.
        let nanos = self.created_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        write!(f, "{:016x}{}", nanos as u64, self.id.simple())
    }
}

impl FromStr for Cursor {
    type Err = ForgeError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || ForgeError::invalid("cursor", "not a cursor returned by a previous page");
        if s.len() != 48 || !s.is_ascii() {
            return Err(bad());
        }
        let nanos = u64::from_str_radix(&s[..16], 16).map_err(|_| bad())? as i64;
        let created_at = DateTime::from_timestamp_nanos(nanos);
        let id = Uuid::parse_str(&s[16..]).map_err(|_| bad())?;
        Ok(Self { created_at, id })
    }
}

impl serde::Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which page to fetch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Start after this cursor (`None`: the first page).
    pub after: Option<Cursor>,
    /// Rows per page (`None`: [`DEFAULT_PAGE_SIZE`]; at most [`MAX_PAGE_SIZE`]).
    pub limit: Option<u64>,
}

impl PageRequest {
    /// The first page with the default size.
    pub fn first() -> Self {
        Self::default()
    }

    /// The first page with `limit` rows.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            after: None,
            limit: Some(limit),
        }
    }

    /// The page after `cursor`, with the same size as `self`.
    pub fn next(&self, cursor: Cursor) -> Self {
        Self {
            after: Some(cursor),
            limit: self.limit,
        }
    }

    /// The validated page size.
    ///
    /// # Errors
    /// [`ForgeError::Validation`] for 0 or more than [`MAX_PAGE_SIZE`].
    pub fn page_size(&self) -> Result<u64> {
        match self.limit {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            Some(n) => Err(ForgeError::invalid(
                "limit",
                format!("{n} is outside 1..={MAX_PAGE_SIZE}"),
            )),
        }
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Page<T> {
    /// The rows, in list order.
    pub items: Vec<T>,
    /// The cursor of the next page, `None` on the last one.
    pub next: Option<Cursor>,
}

/// List direction over `(created_at, id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    NewestFirst,
    OldestFirst,
}

/// Applies keyset order, the cursor and `size + 1` rows to `select`.
pub(crate) fn keyset<E, C>(
    select: Select<E>,
    created_at: C,
    id: C,
    direction: Direction,
    request: &PageRequest,
) -> Result<(Select<E>, u64)>
where
    E: EntityTrait,
    C: ColumnTrait + Copy,
{
    let size = request.page_size()?;
    let order = match direction {
        Direction::NewestFirst => Order::Desc,
        Direction::OldestFirst => Order::Asc,
    };
    let mut select = select
        .order_by(created_at, order.clone())
        .order_by(id, order)
        .limit(size + 1);
    if let Some(c) = &request.after {
        let (ts, key) = (c.created_at, c.id);
        let beyond = match direction {
            Direction::NewestFirst => Condition::any()
                .add(created_at.lt(ts))
                .add(Condition::all().add(created_at.eq(ts)).add(id.lt(key))),
            Direction::OldestFirst => Condition::any()
                .add(created_at.gt(ts))
                .add(Condition::all().add(created_at.eq(ts)).add(id.gt(key))),
        };
        select = select.filter(beyond);
    }
    Ok((select, size))
}

/// Turns `size + 1` fetched rows into a page.
pub(crate) fn page<T, K: Into<Uuid>>(
    mut rows: Vec<T>,
    size: u64,
    key: impl Fn(&T) -> (DateTime<Utc>, K),
) -> Page<T> {
    let more = rows.len() as u64 > size;
    rows.truncate(size as usize);
    let next = if more {
        rows.last().map(|r| {
            let (created_at, id) = key(r);
            Cursor::after(created_at, id)
        })
    } else {
        None
    };
    Page { items: rows, next }
}

/// Runs a keyset-paginated `select` for `actor`, ordered by `(created_at, id)`.
pub(crate) async fn fetch_page<C, E, K>(
    db: &C,
    actor: Actor,
    select: Select<E>,
    columns: (E::Column, E::Column),
    direction: Direction,
    request: &PageRequest,
    key: fn(&E::Model) -> (DateTime<Utc>, K),
) -> Result<Page<E::Model>>
where
    C: Connection,
    E: EntityTrait,
    E::Model: Send + Sync,
    K: Into<Uuid> + 'static,
{
    let (select, size) = keyset(select, columns.0, columns.1, direction, request)?;
    Ok(page(
        crate::scoped::all(db, actor, select).await?,
        size,
        key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor::after(Utc::now(), Uuid::new_v4());
        let parsed = c.to_string().parse::<Cursor>().ok();
        assert_eq!(parsed, Some(c.clone()), "exact to the nanosecond");
        for bad in [
            "",
            "abc",
            &"z".repeat(48),
            &format!("{}x", &c.to_string()[..47]),
        ] {
            assert!(
                matches!(
                    bad.parse::<Cursor>(),
                    Err(ForgeError::Validation {
                        field: "cursor",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_size_bounds() {
        assert_eq!(
            PageRequest::first().page_size().ok(),
            Some(DEFAULT_PAGE_SIZE)
        );
        assert_eq!(
            PageRequest::with_limit(MAX_PAGE_SIZE).page_size().ok(),
            Some(MAX_PAGE_SIZE)
        );
        assert!(PageRequest::with_limit(0).page_size().is_err());
        assert!(
            PageRequest::with_limit(MAX_PAGE_SIZE + 1)
                .page_size()
                .is_err()
        );
    }
}
