//! A scratch database for the PostgreSQL benchmarks (shared by the examples that
//! `#[path]`-include it).

use forge_db::sea_orm::{ConnectionTrait, DatabaseConnection};

/// Creates `<prefix>_<random>` on the server of `url` (the role needs `CREATEDB`); returns
/// an admin pool on `url`, the new database's name and its URL. Drop it with
/// `DROP DATABASE … WITH (FORCE)` on the admin pool when done.
pub async fn database(
    url: &str,
    prefix: &str,
) -> Result<(DatabaseConnection, String, String), Box<dyn std::error::Error + Send + Sync>> {
    let admin = forge_db::connect(url).await?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let bench_url = with_database(url, &name);
    Ok((admin, name, bench_url))
}

/// `url` with its database name replaced by `name` (query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}
