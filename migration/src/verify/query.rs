//! Reading catalog queries as rows of text.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr, Statement, Value};

/// A row of a catalog query: every column as text, `NULL` as `None`.
pub(crate) type Row = Vec<Option<String>>;

/// Runs `sql` with `values` bound and reads the first `width` columns of every row as text
/// (the queries cast whatever is not text already).
pub(crate) async fn rows<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    values: Vec<Value>,
    width: usize,
) -> Result<Vec<Row>, DbErr> {
    let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    db.query_all_raw(stmt)
        .await?
        .iter()
        .map(|row| {
            (0..width)
                .map(|i| row.try_get_by_index::<Option<String>>(i))
                .collect()
        })
        .collect()
}

/// Column `i` of `row`, `""` when NULL or absent.
pub(crate) fn col(row: &Row, i: usize) -> &str {
    row.get(i).and_then(Option::as_deref).unwrap_or_default()
}

/// Column `i` of `row`, `None` when NULL or absent.
pub(crate) fn opt(row: &Row, i: usize) -> Option<String> {
    row.get(i).cloned().flatten()
}
