//! API keys: programmatic access for a user (`api_keys`, SCHEMA.md "Accounts").
//!
//! A key reads `forge_<prefix>_<secret>`: `forge_` and 12 hex digits of random prefix
//! (the row's `key_prefix`, unique, shown in lists), then 64 hex digits of secret (32 bytes
//! from the operating system's random source). The whole key is returned once, by
//! [`create`]; the table keeps only its prefix and the SHA-256 of the whole key
//! (`key_hash`), which nothing returned to a caller carries: every read and write here
//! returns an [`ApiKeyInfo`], the row without its hash. The secret has 256 bits of entropy,
//! so an unsalted fast hash is enough: the key cannot be recovered from the hash, and
//! nothing here compares hashes other than in constant time.
//!
//! Invariants:
//! - A user creates, sees, renames and revokes only their own keys; someone else's key
//!   looks exactly like a missing one ([`ForgeError::NotFound`]). The service may act on
//!   any key and create one for any owner. On PostgreSQL the database holds the same rules
//!   for `authenticated` by itself (RLS, column privileges: no `key_hash`, `UPDATE` of
//!   `name` and of `revoked_at` only, once), and its triggers write the `api_key.created`
//!   and `api_key.revoked` activity rows.
//! - `name` is stored trimmed, never blank, at most 100 characters; `scopes` is a
//!   non-empty set of known [`Scope`]s, stored as a JSON array of their names.
//! - Revoking is one-way: `revoked_at` is set once, and revoking again is
//!   [`ForgeError::InvalidTransition`]. At most 10 unrevoked keys per user: the database
//!   refuses the 11th ([`ForgeError::LimitReached`]).
//! - [`authenticate`] refuses an unknown, revoked, expired, malformed or tampered key with
//!   the same [`ForgeError::Unauthenticated`], and writes `last_used_at` at most once a
//!   minute per key: most requests are one read and no write.
//! - Lists are newest first by `(created_at, id)` with keyset pagination.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use forge_entity::api_keys::{self, Column as Col};
use forge_entity::ids::{ApiKeyId, ProfileId};
use sea_orm::prelude::Json;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, QueryTrait, Select, Set, UpdateMany,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::actor::{Access, Actor, Connection, owner_of_new, run_as};
use crate::error::{ForgeError, Result};
use crate::pagination::{self, Direction, Page, PageRequest};
use crate::scoped;
use crate::validate;

const ENTITY: &str = "api key";

/// Longest accepted name (the schema's CHECK).
const MAX_NAME: usize = 100;

/// What every key starts with.
const KEY_START: &str = "forge_";
/// Random bytes in a key's prefix (hex: twice as many digits).
const PREFIX_BYTES: usize = 6;
/// Random bytes in a key's secret (hex: twice as many digits).
const SECRET_BYTES: usize = 32;

/// How often [`authenticate`] writes a key's `last_used_at` at most.
pub const LAST_USED_GRANULARITY: TimeDelta = TimeDelta::seconds(60);

/// How often [`create`] draws a new key when its random prefix is already taken.
const PREFIX_ATTEMPTS: u32 = 3;

/// What a key allows. Stored and serialized as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Reading: `GET` requests.
    Read,
    /// Changing things: every other request.
    Write,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 2] = [Scope::Read, Scope::Write];

    /// The scope's name, as stored: `read`, `write`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ForgeError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| ForgeError::invalid("scopes", format!("unknown scope {s:?}")))
    }
}

/// A key to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    /// The owner: `None` for the acting user themself. A user naming anyone else gets
    /// [`ForgeError::NotFound`] for that profile; the service must name one.
    pub owner: Option<ProfileId>,
    /// A name for the user to recognise it by: trimmed, not blank, at most 100 characters.
    pub name: String,
    /// What it allows: at least one scope (duplicates are dropped).
    pub scopes: Vec<Scope>,
    /// When it stops working (in the future), or `None` for never.
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewApiKey {
    /// A key called `name` for the acting user, with `scopes`, that never expires.
    pub fn new(name: impl Into<String>, scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            owner: None,
            name: name.into(),
            scopes: scopes.into_iter().collect(),
            expires_at: None,
        }
    }
}

/// A key as callers see it: its row without `key_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    /// The key's id.
    pub id: ApiKeyId,
    /// Its owner.
    pub user_id: ProfileId,
    /// Its name.
    pub name: String,
    /// The key's first characters (`forge_` and 12 hex digits), to recognise it by.
    pub key_prefix: String,
    /// What it allows.
    pub scopes: Vec<Scope>,
    /// When it last authenticated a request (written at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its row last changed.
    pub updated_at: DateTime<Utc>,
}

impl ApiKeyInfo {
    /// Whether the key authenticates requests at `now`: not revoked, not expired.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        usable(self.revoked_at, self.expires_at, now)
    }
}

/// A key just created: its row, and the whole key, which is shown this once.
///
/// `Debug` prints the key's prefix only, so the secret stays out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedApiKey {
    /// The stored key, without its hash.
    pub key: ApiKeyInfo,
    /// The whole key, `forge_<prefix>_<secret>`: give it to the user now; it cannot be
    /// recovered later.
    pub secret: String,
}

impl fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("key", &self.key)
            .field("secret", &format_args!("{}_…", self.key.key_prefix))
            .finish()
    }
}

/// Who a valid key speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The key's owner, as the actor of the request's calls.
    pub actor: Actor,
    /// The key.
    pub key_id: ApiKeyId,
    /// What the key allows.
    pub scopes: Vec<Scope>,
}

impl Authenticated {
    /// Whether the key grants `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Which keys [`list`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListApiKeys {
    /// Only this owner's keys. A user always lists their own only, so naming someone else
    /// gives an empty list; for the service `None` means every owner.
    pub owner: Option<ProfileId>,
    /// Include revoked keys; `false` leaves them out.
    pub include_revoked: bool,
}

/// Keys visible to `actor`: their own, or all for the service. Crate-private, and no
/// [`Scoped`](crate::scoped::Scoped) impl (whose `find`/`get` select every column), unlike
/// other aggregates: a user's select must name [`INFO_COLUMNS`], as on PostgreSQL
/// `authenticated` may not read `key_hash` (`SELECT *` is refused).
pub(crate) fn visible_to(actor: Actor) -> Select<api_keys::Entity> {
    scoped::owned_by(actor, Col::UserId)
}

/// Every column but `key_hash`: what reads select and writes return.
const INFO_COLUMNS: [Col; 10] = [
    Col::Id,
    Col::UserId,
    Col::Name,
    Col::KeyPrefix,
    Col::Scopes,
    Col::LastUsedAt,
    Col::ExpiresAt,
    Col::RevokedAt,
    Col::CreatedAt,
    Col::UpdatedAt,
];

/// A row of [`INFO_COLUMNS`] as read.
#[derive(FromQueryResult)]
struct InfoRow {
    id: ApiKeyId,
    user_id: ProfileId,
    name: String,
    key_prefix: String,
    scopes: Json,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<InfoRow> for ApiKeyInfo {
    fn from(row: InfoRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            key_prefix: row.key_prefix,
            scopes: scopes_of(&row.scopes),
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl From<api_keys::Model> for ApiKeyInfo {
    fn from(row: api_keys::Model) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            key_prefix: row.key_prefix,
            scopes: scopes_of(&row.scopes),
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The known scopes of a stored `scopes` array. A name this build does not know grants
/// nothing (a key never gains access from a name it cannot interpret).
fn scopes_of(stored: &Json) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = stored
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|name| name.as_str()?.parse().ok())
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

/// Whether a key with these dates works at `now`.
fn usable(
    revoked_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    revoked_at.is_none() && expires_at.is_none_or(|at| at > now)
}

/// Creates a key for `new.owner` (the acting user when `None`) and returns it with the
/// whole key, which is never shown again. Two statements in one transaction, as the
/// service (end users may not insert keys on PostgreSQL): the owner's profile is looked
/// up, the key inserted.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long name, no scopes, or an `expires_at`
/// not in the future; [`ForgeError::NotFound`] (entity `"profile"`) when the owner does not
/// exist or, for a user, is someone else; [`ForgeError::LimitReached`] when the owner
/// already has 10 unrevoked keys.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "create"))]
pub async fn create<C>(db: &C, actor: Actor, new: NewApiKey) -> Result<CreatedApiKey>
where
    C: Connection,
{
    let name = validate::text("name", &new.name, MAX_NAME)?;
    let mut scopes = new.scopes;
    scopes.sort_unstable();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ForgeError::invalid(
            "scopes",
            "a key needs at least one scope",
        ));
    }
    let expires_at = new
        .expires_at
        .map(|at| {
            validate::storable_instant("expires_at", at)?;
            validate::future("expires_at", at.trunc_subsecs(6))
        })
        .transpose()?;
    let owner = owner_of_new(actor, new.owner)?;
    let scopes =
        serde_json::to_value(&scopes).map_err(|e| ForgeError::invalid("scopes", e.to_string()))?;

    let mut attempt = 1;
    loop {
        let (key_prefix, secret) = generate()?;
        let now = crate::now();
        let row = api_keys::ActiveModel {
            id: Set(ApiKeyId::new()),
            user_id: Set(owner),
            name: Set(name.clone()),
            key_prefix: Set(key_prefix),
            key_hash: Set(hash(&secret)),
            scopes: Set(scopes.clone()),
            last_used_at: Set(None),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let inserted = run_as(db, Actor::Service, Access::Write, move |txn| {
            Box::pin(async move {
                forge_entity::profiles::Entity::find_by_id(owner)
                    .one(txn)
                    .await?
                    .ok_or_else(|| ForgeError::not_found("profile", owner))?;
                Ok(row.insert(txn).await?)
            })
        })
        .await;
        match inserted {
            Ok(row) => {
                return Ok(CreatedApiKey {
                    key: row.into(),
                    secret,
                });
            }
            // 48 random bits of prefix rarely collide; when they do, draw a new key.
            Err(ForgeError::Conflict { what })
                if attempt < PREFIX_ATTEMPTS && what.contains("key_prefix") =>
            {
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Key `id` if `actor` may see it: one statement.
///
/// # Errors
/// [`ForgeError::Db`] on a database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "find", id = %id))]
pub async fn find<C>(db: &C, actor: Actor, id: ApiKeyId) -> Result<Option<ApiKeyInfo>>
where
    C: Connection,
{
    let select = info(visible_to(actor)).filter(Col::Id.eq(id)).limit(1);
    Ok(read(db, actor, select).await?.into_iter().next())
}

/// Key `id`: one statement.
///
/// # Errors
/// [`ForgeError::NotFound`] when it does not exist or is not `actor`'s.
pub async fn get<C>(db: &C, actor: Actor, id: ApiKeyId) -> Result<ApiKeyInfo>
where
    C: Connection,
{
    find(db, actor, id)
        .await?
        .ok_or_else(|| ForgeError::not_found(ENTITY, id))
}

/// One page of the keys `actor` may see, newest first: one statement.
///
/// # Errors
/// [`ForgeError::Validation`] for a page size of 0 or above
/// [`MAX_PAGE_SIZE`](crate::MAX_PAGE_SIZE).
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "list"))]
pub async fn list<C>(
    db: &C,
    actor: Actor,
    filter: &ListApiKeys,
    request: &PageRequest,
) -> Result<Page<ApiKeyInfo>>
where
    C: Connection,
{
    let mut select = visible_to(actor);
    if let Some(owner) = filter.owner {
        select = select.filter(Col::UserId.eq(owner));
    }
    if !filter.include_revoked {
        select = select.filter(Col::RevokedAt.is_null());
    }
    let (select, size) = pagination::keyset(
        info(select),
        Col::CreatedAt,
        Col::Id,
        Direction::NewestFirst,
        request,
    )?;
    let rows = read(db, actor, select).await?;
    Ok(pagination::page(rows, size, |k| (k.created_at, k.id)))
}

/// Renames key `id` (revoked keys too): one conditional `UPDATE … RETURNING`.
///
/// # Errors
/// [`ForgeError::Validation`] for a blank or over-long name; [`ForgeError::NotFound`]
/// when the key is not `actor`'s.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "rename", id = %id))]
pub async fn rename<C>(db: &C, actor: Actor, id: ApiKeyId, name: &str) -> Result<ApiKeyInfo>
where
    C: Connection,
{
    let name = validate::text("name", name, MAX_NAME)?;
    let update = api_keys::Entity::update_many().col_expr(Col::Name, Expr::value(name));
    update_returning(db, actor, id, update, Condition::all())
        .await?
        .ok_or_else(|| ForgeError::not_found(ENTITY, id))
}

/// Revokes key `id`: from now on it authenticates nothing. One conditional
/// `UPDATE … RETURNING` (and a second read only when it matched nothing, to say why).
///
/// # Errors
/// [`ForgeError::NotFound`] when the key is not `actor`'s;
/// [`ForgeError::InvalidTransition`] (from `revoked` to `revoked`) when it already is.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "revoke", id = %id))]
pub async fn revoke<C>(db: &C, actor: Actor, id: ApiKeyId) -> Result<ApiKeyInfo>
where
    C: Connection,
{
    let update =
        api_keys::Entity::update_many().col_expr(Col::RevokedAt, Expr::value(crate::now()));
    let only_if = Condition::all().add(Col::RevokedAt.is_null());
    match update_returning(db, actor, id, update, only_if).await? {
        Some(revoked) => Ok(revoked),
        None => {
            get(db, actor, id).await?;
            Err(ForgeError::InvalidTransition {
                entity: ENTITY,
                from: "revoked".to_owned(),
                to: "revoked".to_owned(),
            })
        }
    }
}

/// The user and scopes of the whole key `key` (`forge_<prefix>_<secret>`).
///
/// One read by prefix as the service, the hash compared in constant time, and a write of
/// `last_used_at` only when it is a minute old or more (a conditional `UPDATE`, so racing
/// requests write it once): most calls are one statement.
///
/// # Errors
/// [`ForgeError::Unauthenticated`] — the same for a malformed, unknown, tampered,
/// revoked or expired key, so a caller learns nothing about which; [`ForgeError::Db`] on a
/// database failure.
#[tracing::instrument(skip_all, fields(entity = ENTITY, op = "authenticate"))]
pub async fn authenticate<C>(db: &C, key: &str) -> Result<Authenticated>
where
    C: Connection,
{
    let key = key.trim();
    let Some(prefix) = prefix_of(key) else {
        return Err(ForgeError::Unauthenticated);
    };
    let presented = hash(key);
    let select = api_keys::Entity::find()
        .select_only()
        .columns([
            Col::Id,
            Col::UserId,
            Col::KeyHash,
            Col::Scopes,
            Col::LastUsedAt,
            Col::ExpiresAt,
            Col::RevokedAt,
        ])
        .filter(Col::KeyPrefix.eq(prefix))
        .limit(1);
    let stmt = select.build(db.get_database_backend());
    let rows = scoped::rows(db, Actor::Service, Access::Read, stmt).await?;
    let Some(row) = rows.first() else {
        return Err(ForgeError::Unauthenticated);
    };
    let row = KeyRow::from_query_result(row, "")?;
    let now = crate::now();
    let genuine = constant_time_eq(presented.as_bytes(), row.key_hash.as_bytes());
    if !(genuine && usable(row.revoked_at, row.expires_at, now)) {
        return Err(ForgeError::Unauthenticated);
    }
    let stale = now - LAST_USED_GRANULARITY;
    if row.last_used_at.is_none_or(|at| at <= stale) {
        touch(db, row.id, now, stale).await?;
    }
    Ok(Authenticated {
        actor: Actor::User(row.user_id),
        key_id: row.id,
        scopes: scopes_of(&row.scopes),
    })
}

/// What [`authenticate`] reads of a key.
#[derive(FromQueryResult)]
struct KeyRow {
    id: ApiKeyId,
    user_id: ProfileId,
    key_hash: String,
    scopes: Json,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Sets key `id`'s `last_used_at` to `now` unless another request did within the minute
/// (`last_used_at` after `stale`).
async fn touch<C: Connection>(
    db: &C,
    id: ApiKeyId,
    now: DateTime<Utc>,
    stale: DateTime<Utc>,
) -> Result<()> {
    let update = api_keys::Entity::update_many()
        .col_expr(Col::LastUsedAt, Expr::value(now))
        .filter(Col::Id.eq(id))
        .filter(
            Condition::any()
                .add(Col::LastUsedAt.is_null())
                .add(Col::LastUsedAt.lte(stale)),
        );
    let stmt = update.build(db.get_database_backend());
    scoped::rows(db, Actor::Service, Access::Write, stmt).await?;
    Ok(())
}

/// `select` narrowed to [`INFO_COLUMNS`].
fn info(select: Select<api_keys::Entity>) -> Select<api_keys::Entity> {
    select.select_only().columns(INFO_COLUMNS)
}

/// Runs a select of [`INFO_COLUMNS`] for `actor`: one statement.
async fn read<C: Connection>(
    db: &C,
    actor: Actor,
    select: Select<api_keys::Entity>,
) -> Result<Vec<ApiKeyInfo>> {
    let stmt = select.build(db.get_database_backend());
    scoped::rows(db, actor, Access::Read, stmt)
        .await?
        .iter()
        .map(|row| Ok(InfoRow::from_query_result(row, "")?.into()))
        .collect()
}

/// Applies `update` to key `id` if `actor` may see it and `only_if` holds, returning the
/// changed key without its hash: one `UPDATE … RETURNING` of [`INFO_COLUMNS`] (a user may
/// not read `key_hash` on PostgreSQL, so `RETURNING *` would be refused). `None` when
/// nothing matched.
async fn update_returning<C: Connection>(
    db: &C,
    actor: Actor,
    id: ApiKeyId,
    update: UpdateMany<api_keys::Entity>,
    only_if: Condition,
) -> Result<Option<ApiKeyInfo>> {
    let update = update
        .col_expr(Col::UpdatedAt, Expr::value(crate::now()))
        .filter(Col::Id.eq(id))
        .filter(scoped::owner_is(actor, Col::UserId))
        .filter(only_if);
    let mut update = update.into_query();
    update.returning(Query::returning().columns(INFO_COLUMNS));
    let stmt = db.get_database_backend().build(&update);
    match scoped::rows(db, actor, Access::Write, stmt).await?.first() {
        Some(row) => Ok(Some(InfoRow::from_query_result(row, "")?.into())),
        None => Ok(None),
    }
}

/// A new key's prefix (`forge_` and 12 hex digits) and the whole key.
fn generate() -> Result<(String, String)> {
    let mut random = [0u8; PREFIX_BYTES + SECRET_BYTES];
    getrandom::fill(&mut random).map_err(|e| {
        ForgeError::Db(sea_orm::DbErr::Custom(format!(
            "the operating system's random source failed: {e}"
        )))
    })?;
    let (prefix, secret) = random.split_at(PREFIX_BYTES);
    let prefix = format!("{KEY_START}{}", hex(prefix));
    let key = format!("{prefix}_{}", hex(secret));
    Ok((prefix, key))
}

/// The prefix of a well-formed key (`forge_` and 12 lowercase hex digits, `_`, 64 lowercase
/// hex digits); `None` for anything else.
fn prefix_of(key: &str) -> Option<&str> {
    let prefix_len = KEY_START.len() + 2 * PREFIX_BYTES;
    let rest = key.strip_prefix(KEY_START)?;
    let (prefix, secret) = rest.split_once('_')?;
    let lower_hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    (lower_hex(prefix, 2 * PREFIX_BYTES) && lower_hex(secret, 2 * SECRET_BYTES))
        .then(|| &key[..prefix_len])
}

/// The stored hash of a whole key: SHA-256, in lowercase hex.
fn hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths (both are
/// hashes of a fixed length here), so a timing attacker learns nothing about how much of a
/// guessed hash matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_well_formed_and_distinct() {
        let (prefix, key) = generate().unwrap();
        assert_eq!(prefix_of(&key), Some(prefix.as_str()));
        assert_eq!(
            key.len(),
            KEY_START.len() + 2 * PREFIX_BYTES + 1 + 2 * SECRET_BYTES
        );
        let (_, other) = generate().unwrap();
        assert_ne!(key, other);
        assert_ne!(hash(&key), hash(&other));
        assert_eq!(hash(&key).len(), 64);
        assert!(!hash(&key).contains(&key[prefix.len() + 1..]));
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        let (_, key) = generate().unwrap();
        for bad in [
            "",
            "forge_",
            &key[..key.len() - 1],
            &format!("{key}0"),
            &key.to_uppercase(),
            &key.replacen("forge_", "forgd_", 1),
            &format!("{}g", &key[..key.len() - 1]),
        ] {
            assert_eq!(prefix_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn scopes_round_trip_and_unknown_names_grant_nothing() {
        let stored = serde_json::to_value([Scope::Write, Scope::Read]).unwrap();
        assert_eq!(stored, serde_json::json!(["write", "read"]));
        assert_eq!(scopes_of(&stored), [Scope::Read, Scope::Write]);
        assert_eq!(
            scopes_of(&serde_json::json!(["admin", "read"])),
            [Scope::Read]
        );
        assert!("admin".parse::<Scope>().is_err());
    }
}
