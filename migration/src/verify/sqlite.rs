//! Reading a SQLite schema: `sqlite_master`, `pragma_table_info`, `pragma_index_list` /
//! `pragma_index_info`, `pragma_foreign_key_list`, and the CHECK constraints of each
//! `CREATE TABLE` statement (SQLite keeps no catalog of them; the statement is the schema).

use std::collections::BTreeMap;

use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr};

use super::is_bookkeeping;
use super::model::{Column, Snapshot, Table, kind, squash};
use super::query::{Row, col, opt, rows};

/// The schema of the `main` database.
pub(crate) async fn snapshot<C: ConnectionTrait>(db: &C) -> Result<Snapshot, DbErr> {
    let mut snap = Snapshot::default();
    let tables = rows(
        db,
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'",
        vec![],
        2,
    )
    .await?;
    for row in tables {
        let name = col(&row, 0);
        if is_bookkeeping(name) {
            continue;
        }
        let mut table = Table::default();
        columns(db, name, &mut table).await?;
        checks(col(&row, 1), &mut table);
        uniques(db, name, &mut table).await?;
        foreign_keys(db, name, &mut table).await?;
        snap.tables.insert(name.to_owned(), table);
    }
    let others = rows(
        db,
        "SELECT type, tbl_name, name, sql FROM sqlite_master \
         WHERE type IN ('index', 'trigger') AND sql IS NOT NULL",
        vec![],
        4,
    )
    .await?;
    for row in others {
        let kind = if col(&row, 0) == "index" {
            kind::INDEX
        } else {
            kind::TRIGGER
        };
        let (table, name) = (col(&row, 1), col(&row, 2).to_owned());
        snap.attach(table, kind, name, squash(col(&row, 3)));
    }
    Ok(snap)
}

/// Columns, and the primary key.
async fn columns<C: ConnectionTrait>(db: &C, table: &str, out: &mut Table) -> Result<(), DbErr> {
    let info = rows(
        db,
        "SELECT name, lower(type), CAST(\"notnull\" AS TEXT), dflt_value, CAST(pk AS TEXT) \
         FROM pragma_table_info(?) ORDER BY pk",
        vec![table.into()],
        5,
    )
    .await?;
    let mut key = Vec::new();
    for row in &info {
        let name = col(row, 0).to_owned();
        if col(row, 4) != "0" {
            key.push(name.clone());
        }
        let column = Column {
            ty: col(row, 1).to_owned(),
            not_null: col(row, 2) == "1",
            default: opt(row, 3),
        };
        out.columns.insert(name, column);
    }
    if !key.is_empty() {
        let desc = format!("PRIMARY KEY ({})", key.join(", "));
        out.objects.insert((kind::PRIMARY_KEY, String::new()), desc);
    }
    Ok(())
}

/// UNIQUE constraints (the indexes SQLite makes for them), keyed by their columns.
async fn uniques<C: ConnectionTrait>(db: &C, table: &str, out: &mut Table) -> Result<(), DbErr> {
    let indexes = rows(
        db,
        "SELECT l.name, group_concat(i.name, ', ') FROM pragma_index_list(?) l \
         JOIN pragma_index_info(l.name) i WHERE l.origin = 'u' GROUP BY l.name",
        vec![table.into()],
        2,
    )
    .await?;
    for row in indexes {
        let columns = format!("({})", col(&row, 1));
        let desc = format!("UNIQUE {columns}");
        out.objects.insert((kind::UNIQUE, columns), desc);
    }
    Ok(())
}

/// Foreign keys, keyed by their columns (SQLite does not keep their names).
async fn foreign_keys<C: ConnectionTrait>(
    db: &C,
    table: &str,
    out: &mut Table,
) -> Result<(), DbErr> {
    let list = rows(
        db,
        "SELECT CAST(id AS TEXT), \"from\", \"table\", \"to\", on_delete, on_update \
         FROM pragma_foreign_key_list(?) ORDER BY id, seq",
        vec![table.into()],
        6,
    )
    .await?;
    let mut keys: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in &list {
        keys.entry(col(row, 0)).or_default().push(row);
    }
    for parts in keys.values() {
        let join = |i: usize| {
            parts
                .iter()
                .map(|r| col(r, i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(first) = parts.first() else { continue };
        let desc = format!(
            "REFERENCES {}({}) ON DELETE {} ON UPDATE {}",
            col(first, 2),
            join(3),
            col(first, 4),
            col(first, 5)
        );
        out.objects
            .insert((kind::FOREIGN_KEY, format!("({})", join(1))), desc);
    }
    Ok(())
}

/// The CHECK constraints of a `CREATE TABLE` statement: named ones
/// (`CONSTRAINT "name" CHECK (…)`) by name, unnamed table-level ones by their text.
fn checks(create_table: &str, out: &mut Table) {
    let (Some(open), Some(close)) = (create_table.find('('), create_table.rfind(')')) else {
        return;
    };
    let Some(body) = create_table.get(open + 1..close) else {
        return;
    };
    for item in split_top_level(body) {
        let item = item.trim();
        let (name, rest) = match strip_keyword(item, "CONSTRAINT") {
            Some(rest) => {
                let (name, rest) = identifier(rest);
                (Some(name), rest)
            }
            None => (None, item),
        };
        if strip_keyword(rest, "CHECK").is_some() {
            let desc = squash(rest);
            out.objects
                .insert((kind::CHECK, name.unwrap_or_else(|| desc.clone())), desc);
        }
    }
}

/// `text` without a leading case-insensitive `keyword` and the whitespace after it.
fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    let rest = text.get(keyword.len()..)?;
    let boundary = rest.starts_with(|c: char| c.is_whitespace() || c == '(');
    (head.eq_ignore_ascii_case(keyword) && boundary).then(|| rest.trim_start())
}

/// A leading identifier, quoted (`"…"`, `` `…` ``, `[…]`) or bare, and the rest.
fn identifier(text: &str) -> (String, &str) {
    let close = match text.chars().next() {
        Some('"') => Some('"'),
        Some('`') => Some('`'),
        Some('[') => Some(']'),
        _ => None,
    };
    let (name, rest) = match close {
        Some(close) => {
            let inner = text.get(1..).unwrap_or_default();
            let end = inner.find(close).unwrap_or(inner.len());
            (
                inner.get(..end).unwrap_or_default(),
                inner.get(end + 1..).unwrap_or_default(),
            )
        }
        None => {
            let end = text.find(char::is_whitespace).unwrap_or(text.len());
            text.split_at(end)
        }
    };
    (name.to_owned(), rest.trim_start())
}

/// `body` split at the commas outside parentheses and quotes.
fn split_top_level(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(body.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(body.get(start..).unwrap_or_default());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_found_by_name_and_unnamed_ones_by_text() {
        let mut t = Table::default();
        checks(
            r#"CREATE TABLE "x" ( "a" text NOT NULL DEFAULT 'a,b', "n" integer,
               CONSTRAINT "x_a_check" CHECK (a IN ('a,b', 'c)')), CHECK (n >= 0),
               CONSTRAINT "x_a_key" UNIQUE ("a") )"#,
            &mut t,
        );
        let found: Vec<_> = t.objects.iter().collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            t.objects
                .get(&(kind::CHECK, "x_a_check".to_owned()))
                .map(String::as_str),
            Some("CHECK (a IN ('a,b', 'c)'))")
        );
        assert!(
            t.objects
                .contains_key(&(kind::CHECK, "CHECK (n >= 0)".to_owned()))
        );
    }
}
