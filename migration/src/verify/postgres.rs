//! Reading a PostgreSQL schema from `pg_catalog`: the tables of schema `public` with their
//! columns, constraints, indexes, non-internal triggers, row-level security (enabled and
//! forced), policies and storage parameters; the functions of `public` (extensions'
//! excluded) and `auth.uid()`; the privileges granted on those tables (the bookkeeping
//! tables included), their columns, `public`'s sequences and those functions; the server's
//! roles and the roles the schema names. And the scratch database the expected schema is
//! built in.

use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use super::model::{Column, Snapshot, kind, squash};
use super::query::{Row, col, opt, rows};
use super::{VerifyError, is_bookkeeping, one_line};

/// A catalog query over the tables of `public`, and how to file each of its rows.
struct Probe {
    sql: &'static str,
    width: usize,
    file: fn(&mut Snapshot, &Row),
}

const TABLES: Probe = Probe {
    sql: "SELECT c.relname::text, c.relrowsecurity::text, c.relforcerowsecurity::text,
                 array_to_string(c.reloptions, ', ')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')",
    width: 4,
    file: file_table,
};

const COLUMNS: Probe = Probe {
    sql: "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                 a.attnotnull::text, pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
            AND a.attnum > 0 AND NOT a.attisdropped",
    width: 5,
    file: file_column,
};

const CONSTRAINTS: Probe = Probe {
    sql: "SELECT c.relname::text, k.contype::text, k.conname::text, pg_get_constraintdef(k.oid)
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND k.contype IN ('p', 'f', 'u', 'c', 'x')",
    width: 4,
    file: file_constraint,
};

/// Indexes that do not back a constraint (those are compared as constraints).
const INDEXES: Probe = Probe {
    sql: "SELECT c.relname::text, 'index', i.relname::text, pg_get_indexdef(x.indexrelid)
          FROM pg_index x
          JOIN pg_class i ON i.oid = x.indexrelid
          JOIN pg_class c ON c.oid = x.indrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND NOT EXISTS (
            SELECT 1 FROM pg_constraint k
            WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid
              AND k.contype IN ('p', 'u', 'x'))",
    width: 4,
    file: file_object,
};

const TRIGGERS: Probe = Probe {
    sql: "SELECT c.relname::text, 'trigger', t.tgname::text, pg_get_triggerdef(t.oid)
          FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND NOT t.tgisinternal",
    width: 4,
    file: file_object,
};

const POLICIES: Probe = Probe {
    sql: "SELECT tablename::text, 'policy', policyname::text,
                 concat_ws(' ', permissive, 'FOR', cmd, 'TO', array_to_string(roles, ', '),
                           'USING (' || qual || ')', 'WITH CHECK (' || with_check || ')')
          FROM pg_policies WHERE schemaname = 'public'",
    width: 4,
    file: file_object,
};

/// Functions of `public` that no extension owns (with `SECURITY DEFINER` and their `SET`
/// options, such as `search_path=""`), and `auth.uid()` (present or not: Supabase has its
/// own).
const FUNCTIONS: Probe = Probe {
    sql: "SELECT p.oid::regprocedure::text,
                 concat_ws(' ', 'returns', pg_get_function_result(p.oid),
                           'language', l.lanname, 'body md5', md5(p.prosrc),
                           CASE WHEN p.prosecdef THEN 'security definer' END,
                           'set ' || array_to_string(p.proconfig, ', '))
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_language l ON l.oid = p.prolang
          WHERE n.nspname = 'public' AND NOT EXISTS (
            SELECT 1 FROM pg_depend d
            WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
          UNION ALL
          SELECT 'auth.uid()', 'present'
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'auth' AND p.proname = 'uid' AND p.pronargs = 0",
    width: 2,
    file: file_function,
};

/// Privileges granted to other roles than the owner (grantee 0 is `PUBLIC`): on the tables
/// of `public` (the bookkeeping tables included), their columns, `public`'s sequences, and
/// the functions [`FUNCTIONS`] reads. A NULL ACL stands for the object kind's default
/// privileges (`acldefault`: a function's owner and `PUBLIC` may execute it), so granting
/// or revoking what the default already says reads the same. Every object has a row, with
/// a NULL grantee when nothing is granted on it. Rows of `kind, table, name, grantee,
/// privilege, grantable`.
const GRANTS: Probe = Probe {
    sql: "WITH objects(kind, tbl, name, acl, owner) AS (
            SELECT 'table', c.relname::text, '',
                   coalesce(c.relacl, acldefault('r', c.relowner)), c.relowner
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
            UNION ALL
            SELECT 'column', c.relname::text, a.attname::text,
                   coalesce(a.attacl, acldefault('c', c.relowner)), c.relowner
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
              AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT 'sequence', NULL, c.relname::text,
                   coalesce(c.relacl, acldefault('s', c.relowner)), c.relowner
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'S'
            UNION ALL
            SELECT 'function', NULL, p.oid::regprocedure::text,
                   coalesce(p.proacl, acldefault('f', p.proowner)), p.proowner
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE (n.nspname = 'public' AND NOT EXISTS (
                     SELECT 1 FROM pg_depend d
                     WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                       AND d.deptype = 'e'))
               OR (n.nspname = 'auth' AND p.proname = 'uid' AND p.pronargs = 0)
          )
          SELECT o.kind, o.tbl, o.name,
                 CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee)::text END,
                 g.privilege_type::text, g.is_grantable::text
          FROM objects o LEFT JOIN LATERAL aclexplode(o.acl) g ON g.grantee <> o.owner",
    width: 6,
    file: file_grant,
};

const ROLES: Probe = Probe {
    sql: "SELECT rolname::text FROM pg_roles",
    width: 1,
    file: file_role,
};

/// Roles granted anything on `public`'s tables or the `public` and `auth` schemas, or
/// named by a policy (the owner and PUBLIC excluded).
const REFERENCED_ROLES: Probe = Probe {
    sql: "SELECT pg_get_userbyid(a.grantee)::text
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
               LATERAL aclexplode(c.relacl) a
          WHERE n.nspname = 'public' AND a.grantee <> 0 AND a.grantee <> c.relowner
          UNION
          SELECT pg_get_userbyid(a.grantee)::text
          FROM pg_namespace n, LATERAL aclexplode(n.nspacl) a
          WHERE n.nspname IN ('public', 'auth') AND a.grantee <> 0 AND a.grantee <> n.nspowner
          UNION
          SELECT unnest(roles)::text FROM pg_policies WHERE schemaname = 'public'",
    width: 1,
    file: file_referenced_role,
};

/// The schema of `public`, as the connected role can see it.
pub(crate) async fn snapshot<C: ConnectionTrait>(db: &C) -> Result<Snapshot, DbErr> {
    let mut snap = Snapshot::default();
    // TABLES first: the other probes only attach to tables it found.
    for probe in [
        TABLES,
        COLUMNS,
        CONSTRAINTS,
        INDEXES,
        TRIGGERS,
        POLICIES,
        FUNCTIONS,
        GRANTS,
        ROLES,
        REFERENCED_ROLES,
    ] {
        for row in rows(db, probe.sql, vec![], probe.width).await? {
            (probe.file)(&mut snap, &row);
        }
    }
    Ok(snap)
}

fn file_table(snap: &mut Snapshot, row: &Row) {
    let name = col(row, 0);
    if is_bookkeeping(name) {
        return;
    }
    let table = snap.table(name);
    // FORCE is kept even while RLS is off: it takes effect as soon as RLS is enabled.
    let enabled = if col(row, 1) == "true" {
        "enabled"
    } else {
        "disabled"
    };
    let rls = match col(row, 2) {
        "true" => format!("{enabled}, forced"),
        _ => enabled.to_owned(),
    };
    table.objects.insert((kind::RLS, String::new()), rls);
    if let Some(options) = opt(row, 3).filter(|o| !o.is_empty()) {
        table
            .objects
            .insert((kind::STORAGE, String::new()), options);
    }
}

fn file_column(snap: &mut Snapshot, row: &Row) {
    if let Some(table) = snap.tables.get_mut(col(row, 0)) {
        let column = Column {
            ty: col(row, 2).to_owned(),
            not_null: col(row, 3) == "true",
            default: opt(row, 4),
        };
        table.columns.insert(col(row, 1).to_owned(), column);
    }
}

fn file_constraint(snap: &mut Snapshot, row: &Row) {
    let kind = match col(row, 1) {
        "p" => kind::PRIMARY_KEY,
        "f" => kind::FOREIGN_KEY,
        "u" => kind::UNIQUE,
        "c" => kind::CHECK,
        _ => kind::EXCLUSION,
    };
    snap.attach(
        col(row, 0),
        kind,
        col(row, 2).to_owned(),
        squash(col(row, 3)),
    );
}

/// Rows of `table, kind, name, description`.
fn file_object(snap: &mut Snapshot, row: &Row) {
    let kind = match col(row, 1) {
        "index" => kind::INDEX,
        "trigger" => kind::TRIGGER,
        _ => kind::POLICY,
    };
    snap.attach(
        col(row, 0),
        kind,
        col(row, 2).to_owned(),
        squash(col(row, 3)),
    );
}

fn file_function(snap: &mut Snapshot, row: &Row) {
    snap.globals.insert(
        (kind::FUNCTION, col(row, 0).to_owned()),
        col(row, 1).to_owned(),
    );
}

/// Rows of `kind, table, name, grantee, privilege, grantable` ([`GRANTS`]).
fn file_grant(snap: &mut Snapshot, row: &Row) {
    let object = match col(row, 0) {
        "table" => String::new(),
        what => format!("{what} {}", col(row, 2)),
    };
    let acl = snap.grants.entry((opt(row, 1), object)).or_default();
    let Some(grantee) = opt(row, 3) else {
        return;
    };
    let privilege = match col(row, 5) {
        "true" => format!("{} WITH GRANT OPTION", col(row, 4)),
        _ => col(row, 4).to_owned(),
    };
    acl.entry(grantee.clone()).or_default().insert(privilege);
    if grantee != "PUBLIC" {
        snap.referenced_roles.insert(grantee);
    }
}

fn file_role(snap: &mut Snapshot, row: &Row) {
    snap.roles.insert(col(row, 0).to_owned());
}

fn file_referenced_role(snap: &mut Snapshot, row: &Row) {
    let role = col(row, 0);
    if !role.is_empty() && role != "public" {
        snap.referenced_roles.insert(role.to_owned());
    }
}

/// A new, empty database on `live`'s server, for building the expected schema in.
pub(crate) struct Scratch {
    name: String,
    url: String,
}

impl Scratch {
    /// Creates `forge_verify_<pid>_<nanos>` on the server of `live` (needs CREATEDB).
    pub(crate) async fn create(
        live: &DatabaseConnection,
        live_url: &str,
    ) -> Result<Self, VerifyError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("forge_verify_{}_{nanos}", std::process::id());
        live.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| VerifyError::Scratch {
                reason: format!(
                    "cannot create the scratch database {name} \
                     (verify builds the expected schema there and needs CREATEDB): {}",
                    one_line(&e)
                ),
            })?;
        let url = url_for_database(live_url, &name);
        Ok(Self { name, url })
    }

    /// The scratch database's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Drops the scratch database, closing any connection still open to it.
    pub(crate) async fn drop(self, live: &DatabaseConnection) -> Result<(), VerifyError> {
        let name = self.name;
        live.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .map(|_| ())
            .map_err(|e| VerifyError::Scratch {
                reason: format!("cannot drop the scratch database {name}: {}", one_line(&e)),
            })
    }
}

/// `url` with its database name replaced by `name` (credentials, host and query
/// parameters kept): the URL of another database on the same server.
pub fn url_for_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority = base.get(scheme_end..).unwrap_or_default();
    let root = match authority.find('/') {
        Some(i) => base.get(..scheme_end + i).unwrap_or(base),
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_url_keeps_credentials_host_and_parameters() {
        assert_eq!(
            url_for_database("postgres://u:p@h:5432/forge?sslmode=require", "s"),
            "postgres://u:p@h:5432/s?sslmode=require"
        );
        assert_eq!(url_for_database("postgres://h", "s"), "postgres://h/s");
    }
}
