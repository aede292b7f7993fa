//! forge_service::api_keys on both backends: creating, listing, renaming and revoking keys;
//! the whole key shown once and never stored; authentication refusing every bad key alike;
//! someone else's key invisible; the limit of 10 unrevoked keys; `last_used_at` written at
//! most once a minute. On PostgreSQL, the database wall agreeing when an end user sends the
//! SQL directly.

mod common;

use chrono::{TimeDelta, Utc};
use common::{TestDb, as_service, query_i64, signup};
use forge_db::entity::api_keys;
use forge_db::entity::ids::{ApiKeyId, ProfileId};
use forge_db::sea_orm::sea_query::Expr;
use forge_db::sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, TransactionTrait,
};
use forge_db::service::api_keys::{
    self as repo, ApiKeyInfo, CreatedApiKey, ListApiKeys, NewApiKey, Scope,
};
use forge_db::service::{Actor, ForgeError, PageRequest};

on_both_backends! {
    create_list_rename_revoke => create_list_rename_revoke;
    bad_input_writes_nothing => bad_input_writes_nothing;
    the_secret_is_shown_once_and_not_stored => the_secret_is_shown_once_and_not_stored;
    authenticate_refuses_every_bad_key_alike => authenticate_refuses_every_bad_key_alike;
    someone_elses_key_is_invisible => someone_elses_key_is_invisible;
    the_eleventh_key_is_refused => the_eleventh_key_is_refused;
    last_used_at_is_written_at_most_once_a_minute => last_used_at_is_written_at_most_once_a_minute;
}

async fn key(t: &TestDb, user: ProfileId, name: &str, scopes: &[Scope]) -> CreatedApiKey {
    repo::create(
        &t.db,
        Actor::User(user),
        NewApiKey::new(name, scopes.iter().copied()),
    )
    .await
    .expect("create a key")
}

fn names(keys: &[ApiKeyInfo]) -> Vec<&str> {
    keys.iter().map(|k| k.name.as_str()).collect()
}

/// The stored row of key `id`, hash included, read as the service.
async fn stored(t: &TestDb, id: ApiKeyId) -> api_keys::Model {
    as_service(&t.db, move |txn| {
        Box::pin(async move { Ok(api_keys::Entity::find_by_id(id).one(txn).await?) })
    })
    .await
    .expect("the key is stored")
}

async fn key_count(t: &TestDb) -> i64 {
    query_i64(&t.owner, "SELECT count(*) FROM api_keys").await
}

/// Sets a column of key `id` to an instant, as the database's owner (what a clock moving
/// on would do).
async fn set_instant(
    t: &TestDb,
    id: ApiKeyId,
    column: api_keys::Column,
    at: chrono::DateTime<Utc>,
) {
    api_keys::Entity::update_many()
        .col_expr(column, Expr::value(at))
        .filter(api_keys::Column::Id.eq(id))
        .exec(&t.owner)
        .await
        .expect("set an instant as the owner");
}

async fn create_list_rename_revoke(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let me = Actor::User(a);
    let first = key(t, a, "laptop", &[Scope::Read]).await;
    let second = key(t, a, "  ci  ", &[Scope::Write, Scope::Read, Scope::Write]).await;
    assert_eq!(first.key.user_id, a);
    assert_eq!(second.key.name, "ci", "stored trimmed");
    assert_eq!(
        second.key.scopes,
        [Scope::Read, Scope::Write],
        "a set, in order"
    );
    assert!(first.key.last_used_at.is_none() && first.key.revoked_at.is_none());
    assert!(first.key.is_usable_at(Utc::now()));

    let all = ListApiKeys::default();
    let page = repo::list(db, me, &all, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(names(&page.items), ["ci", "laptop"], "newest first");
    assert_eq!(
        page.items[1], first.key,
        "what create returned is what is stored"
    );
    let one = repo::list(db, me, &all, &PageRequest::with_limit(1))
        .await
        .unwrap();
    let cursor = one.next.clone().expect("a next page");
    let rest = repo::list(db, me, &all, &PageRequest::with_limit(1).next(cursor))
        .await
        .unwrap();
    assert_eq!(
        (names(&one.items), names(&rest.items)),
        (vec!["ci"], vec!["laptop"])
    );
    assert!(rest.next.is_none());

    let renamed = repo::rename(db, me, first.key.id, " old laptop ")
        .await
        .unwrap();
    assert_eq!(renamed.name, "old laptop");
    assert_eq!(
        repo::get(db, me, first.key.id).await.unwrap().name,
        "old laptop"
    );

    let revoked = repo::revoke(db, me, first.key.id).await.unwrap();
    let at = revoked.revoked_at.expect("revoked_at is set");
    assert!(!revoked.is_usable_at(Utc::now()));
    match repo::revoke(db, me, first.key.id).await {
        Err(ForgeError::InvalidTransition {
            entity: "api key",
            from,
            to,
        }) => {
            assert_eq!((from.as_str(), to.as_str()), ("revoked", "revoked"));
        }
        other => panic!("revoking twice: {other:?}"),
    }
    assert_eq!(
        repo::get(db, me, first.key.id).await.unwrap().revoked_at,
        Some(at),
        "revoking again changes nothing"
    );
    // The database logs both creations and the one revocation.
    let logged = |action: &str| {
        let sql = format!("SELECT count(*) FROM activity_logs WHERE action = '{action}'");
        async move { query_i64(&t.owner, &sql).await }
    };
    assert_eq!(
        (
            logged("api_key.created").await,
            logged("api_key.revoked").await
        ),
        (2, 1)
    );
    let page = repo::list(db, me, &all, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(names(&page.items), ["ci"], "revoked keys are left out");
    let with_revoked = ListApiKeys {
        include_revoked: true,
        ..ListApiKeys::default()
    };
    let page = repo::list(db, me, &with_revoked, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(names(&page.items), ["ci", "old laptop"]);

    // The service sees and lists every owner's keys, and creates for anyone.
    let b = signup(db, "b@example.com").await;
    let for_b = NewApiKey {
        owner: Some(b),
        ..NewApiKey::new("deploy", [Scope::Write])
    };
    let theirs = repo::create(db, Actor::Service, for_b).await.unwrap();
    assert_eq!(theirs.key.user_id, b);
    let page = repo::list(db, Actor::Service, &with_revoked, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(names(&page.items), ["deploy", "ci", "old laptop"]);
    let only_b = ListApiKeys {
        owner: Some(b),
        ..ListApiKeys::default()
    };
    let page = repo::list(db, Actor::Service, &only_b, &PageRequest::first())
        .await
        .unwrap();
    assert_eq!(names(&page.items), ["deploy"]);
    let nobody = NewApiKey::new("orphan", [Scope::Read]);
    assert!(matches!(
        repo::create(db, Actor::Service, nobody).await,
        Err(ForgeError::Validation { field: "owner", .. })
    ));
    let ghost = NewApiKey {
        owner: Some(ProfileId::new()),
        ..NewApiKey::new("ghost", [Scope::Read])
    };
    assert!(matches!(
        repo::create(db, Actor::Service, ghost).await,
        Err(ForgeError::NotFound {
            entity: "profile",
            ..
        })
    ));
}

async fn bad_input_writes_nothing(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let me = Actor::User(a);
    let good = key(t, a, "good", &[Scope::Read]).await;
    let before = key_count(t).await;
    let cases = [
        ("name", NewApiKey::new("   ", [Scope::Read])),
        ("name", NewApiKey::new("x".repeat(101), [Scope::Read])),
        ("name", NewApiKey::new("nul\0", [Scope::Read])),
        ("scopes", NewApiKey::new("none", [])),
        (
            "expires_at",
            NewApiKey {
                expires_at: Some(Utc::now() - TimeDelta::minutes(1)),
                ..NewApiKey::new("past", [Scope::Read])
            },
        ),
    ];
    for (field, new) in cases {
        match repo::create(db, me, new.clone()).await {
            Err(ForgeError::Validation { field: f, .. }) => assert_eq!(f, field, "{new:?}"),
            other => panic!("{new:?}: {other:?}"),
        }
    }
    assert!(matches!(
        repo::rename(db, me, good.key.id, " ").await,
        Err(ForgeError::Validation { field: "name", .. })
    ));
    assert_eq!(key_count(t).await, before, "nothing was written");
    assert_eq!(repo::get(db, me, good.key.id).await.unwrap().name, "good");
    assert!(matches!(
        "admin".parse::<Scope>(),
        Err(ForgeError::Validation {
            field: "scopes",
            ..
        })
    ));
}

async fn the_secret_is_shown_once_and_not_stored(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let created = key(t, a, "laptop", &[Scope::Read, Scope::Write]).await;
    let secret = created.secret.clone();
    let (prefix, random) = secret.rsplit_once('_').expect("forge_<prefix>_<secret>");
    assert_eq!(
        prefix, created.key.key_prefix,
        "the prefix is the key's start"
    );
    assert!(prefix.starts_with("forge_"));
    assert_eq!(random.len(), 64, "32 random bytes, hex");
    assert!(
        !format!("{created:?}").contains(random),
        "Debug keeps the secret out of logs"
    );

    let row = stored(t, created.key.id).await;
    assert_eq!(row.key_prefix, created.key.key_prefix);
    assert_eq!(row.key_hash.len(), 64, "a SHA-256, hex");
    assert_ne!(row.key_hash, secret);
    let stored_text = serde_json::to_string(&row).unwrap();
    assert!(
        !stored_text.contains(random),
        "no column holds the secret: {stored_text}"
    );

    // Nothing a user reads carries the hash or the secret.
    let me = Actor::User(a);
    let page = repo::list(db, me, &ListApiKeys::default(), &PageRequest::first())
        .await
        .unwrap();
    let shown = serde_json::to_string(&page).unwrap();
    let got = serde_json::to_string(&repo::get(db, me, created.key.id).await.unwrap()).unwrap();
    for text in [&shown, &got] {
        assert!(
            !text.contains("key_hash") && !text.contains(&row.key_hash),
            "{text}"
        );
        assert!(!text.contains(random), "{text}");
        assert!(text.contains(&created.key.key_prefix), "{text}");
    }

    // Two keys never share a secret, prefix or hash.
    let other = key(t, a, "phone", &[Scope::Read]).await;
    assert_ne!(other.secret, created.secret);
    assert_ne!(other.key.key_prefix, created.key.key_prefix);
    assert_ne!(stored(t, other.key.id).await.key_hash, row.key_hash);
}

async fn authenticate_refuses_every_bad_key_alike(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let me = Actor::User(a);
    let good = key(t, a, "good", &[Scope::Read, Scope::Write]).await;
    let reader = key(t, a, "reader", &[Scope::Read]).await;
    let revoked = key(t, a, "revoked", &[Scope::Read]).await;
    let expired = key(t, a, "expired", &[Scope::Read]).await;
    let expiring = NewApiKey {
        expires_at: Some(Utc::now() + TimeDelta::hours(1)),
        ..NewApiKey::new("expiring", [Scope::Read])
    };
    let expiring = repo::create(db, me, expiring).await.unwrap();

    let ok = repo::authenticate(db, &good.secret).await.unwrap();
    assert_eq!(ok.actor, me);
    assert_eq!(ok.key_id, good.key.id);
    assert_eq!(ok.scopes, [Scope::Read, Scope::Write]);
    assert!(ok.allows(Scope::Write));
    let read_only = repo::authenticate(db, &format!("  {}\n", reader.secret))
        .await
        .unwrap();
    assert!(read_only.allows(Scope::Read) && !read_only.allows(Scope::Write));
    assert_eq!(
        repo::authenticate(db, &expiring.secret)
            .await
            .unwrap()
            .key_id,
        expiring.key.id,
        "a key works until it expires"
    );

    repo::revoke(db, me, revoked.key.id).await.unwrap();
    set_instant(
        t,
        expired.key.id,
        api_keys::Column::ExpiresAt,
        Utc::now() - TimeDelta::seconds(1),
    )
    .await;

    let secret = &good.secret;
    let last = secret.len() - 1;
    let flipped = |at: usize| {
        let mut bytes = secret.clone().into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).unwrap()
    };
    let other_prefix = format!(
        "{}_{}",
        reader.key.key_prefix,
        &secret[good.key.key_prefix.len() + 1..]
    );
    let bad = [
        ("revoked", revoked.secret.clone()),
        ("expired", expired.secret.clone()),
        ("unknown", format!("forge_0123456789ab_{}", "c".repeat(64))),
        ("tampered secret", flipped(last)),
        ("tampered prefix", flipped("forge_".len())),
        ("another key's prefix", other_prefix),
        ("truncated", secret[..last].to_owned()),
        ("empty", String::new()),
        ("not a key", "Bearer hello".to_owned()),
        ("the hash", stored(t, good.key.id).await.key_hash),
    ];
    let expected = ForgeError::Unauthenticated.to_string();
    for (what, presented) in bad {
        match repo::authenticate(db, &presented).await {
            Err(err @ ForgeError::Unauthenticated) => {
                assert_eq!(
                    err.to_string(),
                    expected,
                    "{what}: one message for every case"
                );
                assert_eq!(err.code(), "unauthenticated");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(
        repo::authenticate(db, &good.secret).await.is_ok(),
        "still good"
    );
}

async fn someone_elses_key_is_invisible(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let b = signup(db, "b@example.com").await;
    let theirs = key(t, a, "ada's", &[Scope::Read]).await;
    let mallory = Actor::User(b);
    let id = theirs.key.id;

    let not_found = |result: Result<ApiKeyInfo, ForgeError>| {
        assert!(
            matches!(
                result,
                Err(ForgeError::NotFound {
                    entity: "api key",
                    ..
                })
            ),
            "{result:?}"
        );
    };
    not_found(repo::get(db, mallory, id).await);
    assert_eq!(repo::find(db, mallory, id).await.unwrap(), None);
    not_found(repo::rename(db, mallory, id, "mine now").await);
    not_found(repo::revoke(db, mallory, id).await);
    not_found(repo::get(db, mallory, ApiKeyId::new()).await);
    let everything = ListApiKeys {
        owner: Some(a),
        include_revoked: true,
    };
    let page = repo::list(db, mallory, &everything, &PageRequest::first())
        .await
        .unwrap();
    assert!(page.items.is_empty(), "naming the owner shows nothing");
    let for_ada = NewApiKey {
        owner: Some(a),
        ..NewApiKey::new("backdoor", [Scope::Write])
    };
    assert!(matches!(
        repo::create(db, mallory, for_ada).await,
        Err(ForgeError::NotFound {
            entity: "profile",
            ..
        })
    ));

    let unchanged = repo::get(db, Actor::User(a), id).await.unwrap();
    assert_eq!(unchanged, theirs.key);
    assert_eq!(key_count(t).await, 1, "no key was made for Ada");
    assert_eq!(
        repo::authenticate(db, &theirs.secret).await.unwrap().actor,
        Actor::User(a)
    );
}

async fn the_eleventh_key_is_refused(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let me = Actor::User(a);
    let mut keys = Vec::new();
    for i in 0..10 {
        keys.push(key(t, a, &format!("key {i}"), &[Scope::Read]).await);
    }
    let eleventh = NewApiKey::new("one too many", [Scope::Read]);
    match repo::create(db, me, eleventh.clone()).await {
        Err(ForgeError::LimitReached { what, limit }) => {
            assert_eq!((what, limit), ("api keys", 10));
        }
        other => panic!("the 11th key: {other:?}"),
    }
    let for_a = NewApiKey {
        owner: Some(a),
        ..eleventh.clone()
    };
    assert!(
        matches!(
            repo::create(db, Actor::Service, for_a).await,
            Err(ForgeError::LimitReached { .. })
        ),
        "the service too"
    );
    assert_eq!(key_count(t).await, 10);

    // Revoked keys do not count; another user has their own 10.
    repo::revoke(db, me, keys[0].key.id).await.unwrap();
    repo::create(db, me, eleventh).await.expect("room again");
    let b = signup(db, "b@example.com").await;
    key(t, b, "bob's", &[Scope::Read]).await;
}

/// Counts every row write of `api_keys.last_used_at` in `api_key_touches` (a trigger of
/// the test's own, installed as the owner).
async fn count_touches(t: &TestDb) {
    let sql = match t.backend() {
        DbBackend::Postgres => {
            "CREATE TABLE public.api_key_touches (id bigserial PRIMARY KEY);
             CREATE FUNCTION public.count_api_key_touch() RETURNS trigger
               LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS
               $$ BEGIN INSERT INTO public.api_key_touches DEFAULT VALUES; RETURN NULL; END $$;
             CREATE TRIGGER count_api_key_touch AFTER UPDATE OF last_used_at ON public.api_keys
               FOR EACH ROW EXECUTE FUNCTION public.count_api_key_touch();"
        }
        _ => {
            "CREATE TABLE api_key_touches (id INTEGER PRIMARY KEY);
             CREATE TRIGGER count_api_key_touch AFTER UPDATE OF last_used_at ON api_keys
             BEGIN INSERT INTO api_key_touches (id) VALUES (NULL); END;"
        }
    };
    t.owner
        .execute_unprepared(sql)
        .await
        .expect("install the counter");
}

async fn touches(t: &TestDb) -> i64 {
    query_i64(&t.owner, "SELECT count(*) FROM api_key_touches").await
}

async fn last_used_at_is_written_at_most_once_a_minute(t: &TestDb) {
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let created = key(t, a, "busy", &[Scope::Read]).await;
    let id = created.key.id;
    count_touches(t).await;

    let before = Utc::now();
    for _ in 0..5 {
        repo::authenticate(db, &created.secret).await.unwrap();
    }
    assert_eq!(touches(t).await, 1, "five requests, one write");
    let first = repo::get(db, Actor::User(a), id)
        .await
        .unwrap()
        .last_used_at
        .expect("last_used_at is set");
    assert!(first >= before - TimeDelta::seconds(1));

    // A minute later the next request writes it again, once.
    let earlier = first - TimeDelta::seconds(61);
    set_instant(t, id, api_keys::Column::LastUsedAt, earlier).await;
    let written = touches(t).await;
    for _ in 0..3 {
        repo::authenticate(db, &created.secret).await.unwrap();
    }
    assert_eq!(touches(t).await, written + 1, "three requests, one write");
    let second = repo::get(db, Actor::User(a), id)
        .await
        .unwrap()
        .last_used_at
        .unwrap();
    assert!(second > earlier + TimeDelta::seconds(60));

    // A refused key is never written.
    repo::revoke(db, Actor::User(a), id).await.unwrap();
    set_instant(t, id, api_keys::Column::LastUsedAt, earlier).await;
    let written = touches(t).await;
    assert!(repo::authenticate(db, &created.secret).await.is_err());
    assert_eq!(touches(t).await, written);
}

/// Runs `sql` on PostgreSQL as `authenticated` with `user`'s JWT claims, as an end user
/// reaching the table directly (PostgREST) would, in a transaction that is rolled back:
/// the rows it changed, or the database's refusal.
async fn as_end_user(t: &TestDb, user: ProfileId, sql: &str) -> Result<u64, String> {
    let txn = t.owner.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SET LOCAL ROLE authenticated; \
         SELECT set_config('request.jwt.claims', '{{\"sub\":\"{user}\",\"role\":\"authenticated\"}}', true), \
                set_config('request.jwt.claim.sub', '{user}', true);"
    ))
    .await
    .unwrap();
    let outcome = txn
        .execute_unprepared(sql)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| e.to_string());
    txn.rollback().await.unwrap();
    outcome
}

/// The database wall on api_keys, for SQL that reaches it without Forge.
#[tokio::test]
async fn postgres_end_users_cannot_read_hashes_or_touch_others_keys() {
    let t = TestDb::postgres().await;
    let db = &t.db;
    let a = signup(db, "a@example.com").await;
    let b = signup(db, "b@example.com").await;
    let mine = key(&t, a, "mine", &[Scope::Read]).await.key.id;
    let theirs = key(&t, b, "theirs", &[Scope::Read]).await.key.id;

    // Column privileges refuse what a user may not read or write at all; the guard
    // trigger refuses a second revocation.
    let denied = "permission denied for table api_keys";
    let revoked_once = "forge:transition:api key:revoked";
    let refused = |what: &str, outcome: Result<u64, String>, why: &str| match outcome {
        Err(e) => assert!(e.contains(why), "{what}: {e}"),
        Ok(n) => panic!("{what}: the database allowed it ({n} rows)"),
    };
    refused(
        "reading key_hash",
        as_end_user(&t, a, "SELECT key_hash FROM api_keys").await,
        denied,
    );
    refused(
        "reading every column",
        as_end_user(&t, a, "SELECT * FROM api_keys").await,
        denied,
    );
    refused(
        "guessing a hash",
        as_end_user(&t, a, "SELECT id FROM api_keys WHERE key_hash = 'x'").await,
        denied,
    );
    assert_eq!(
        as_end_user(&t, a, "SELECT id, name, key_prefix FROM api_keys").await,
        Ok(1),
        "a user reads their own key, without its hash"
    );

    // Someone else's key: invisible to every write.
    for sql in [
        format!("UPDATE api_keys SET name = 'mine now' WHERE id = '{theirs}'"),
        format!("UPDATE api_keys SET revoked_at = now() WHERE id = '{theirs}'"),
        format!("DELETE FROM api_keys WHERE id = '{theirs}'"),
    ] {
        match as_end_user(&t, a, &sql).await {
            Ok(0) => {}
            Err(e) if e.contains("permission denied") => {}
            other => panic!("{sql}: {other:?}"),
        }
    }
    // Their own key: only the name, and a revocation once.
    for (what, sql) in [
        (
            "the hash",
            format!("UPDATE api_keys SET key_hash = 'x' WHERE id = '{mine}'"),
        ),
        (
            "the prefix",
            format!("UPDATE api_keys SET key_prefix = 'x' WHERE id = '{mine}'"),
        ),
        (
            "the scopes",
            format!("UPDATE api_keys SET scopes = '[\"write\"]' WHERE id = '{mine}'"),
        ),
        (
            "the expiry",
            format!("UPDATE api_keys SET expires_at = NULL WHERE id = '{mine}'"),
        ),
        (
            "last use",
            format!("UPDATE api_keys SET last_used_at = now() WHERE id = '{mine}'"),
        ),
        (
            "the owner",
            format!("UPDATE api_keys SET user_id = '{b}' WHERE id = '{mine}'"),
        ),
        (
            "a key of their own",
            format!(
                "INSERT INTO api_keys (id, user_id, name, key_prefix, key_hash, scopes, created_at, updated_at) \
                 VALUES (gen_random_uuid(), '{a}', 'raw', 'forge_000000000000', 'x', '[\"write\"]', now(), now())"
            ),
        ),
    ] {
        refused(what, as_end_user(&t, a, &sql).await, denied);
    }
    assert_eq!(
        as_end_user(
            &t,
            a,
            &format!("UPDATE api_keys SET name = 'renamed' WHERE id = '{mine}'")
        )
        .await,
        Ok(1)
    );
    repo::revoke(db, Actor::User(a), mine).await.unwrap();
    refused(
        "un-revoking",
        as_end_user(
            &t,
            a,
            &format!("UPDATE api_keys SET revoked_at = NULL WHERE id = '{mine}'"),
        )
        .await,
        revoked_once,
    );
    refused(
        "revoking twice",
        as_end_user(
            &t,
            a,
            &format!("UPDATE api_keys SET revoked_at = now() WHERE id = '{mine}'"),
        )
        .await,
        revoked_once,
    );
    t.finish().await;
}
