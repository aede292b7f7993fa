//! A minimal multi-tenant HTTP service (axum) on Forge's repositories: each request's user
//! becomes the acting user ([`Actor::User`]) of every repository call, so one user can
//! never read or change another's projects, sessions or events. The routes and the error
//! mapping live in `app.rs`, which `tests/api.rs` drives without a network.
//!
//! ```sh
//! cargo run --example api                                   # embedded SQLite, ./forge.db
//! DATABASE_URL=postgres://user:pass@host/db cargo run --example api
//! API_ADDR=0.0.0.0:8080 cargo run --example api             # listen elsewhere (default 127.0.0.1:3000)
//! ```
//!
//! **The user comes from an `x-user-id` header: a stand-in for authentication, unsafe
//! outside a demo.** A production service verifies a JWT and takes the user from its `sub`
//! claim (see `app::AuthUser`). **`Authorization: Bearer <API key>` is real**: a key made
//! by `forge_service::api_keys::create`, checked against the database, with `read`/`write`
//! scopes. At start-up the example signs up a demo user (profiles are created by the
//! service, as at signup), creates an API key for it and prints `curl` lines to try.
//! Ctrl-C stops it gracefully. Errors print as one line on stderr, with exit code 1.

mod app;

use std::process::ExitCode;

use forge_db::migration::{Backend, redact_url};
use forge_db::service::Actor;
use forge_db::service::api_keys::{self, NewApiKey, Scope};
use forge_db::service::profiles::{self, NewProfile};
use uuid::Uuid;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("api: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let url = forge_db::migration::url_from_env();
    let addr = std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let backend = Backend::from_url(&url).map_or(String::new(), |b| format!(" ({b})"));
    println!("database  {}{backend}", redact_url(&url));
    let db = forge_db::connect(&url).await?;
    forge_db::migrate(&db).await?;

    let short = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let email = format!("api-demo+{short}@example.com");
    let user = profiles::create(&db, Actor::Service, NewProfile::new(email)).await?;
    let demo_key = NewApiKey::new("api example", [Scope::Read, Scope::Write]);
    let key = api_keys::create(&db, Actor::User(user.id), demo_key).await?;

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let header = format!("{}: {}", app::USER_HEADER, user.id);
    println!("listening {base} (Ctrl-C stops)");
    println!("demo user {} ({})", user.id, user.email);
    let bearer = format!("authorization: Bearer {}", key.secret);
    println!("api key   {} (shown once; read, write)", key.secret);
    println!("try       curl -H '{bearer}' {base}/projects");
    println!("          curl -H '{header}' {base}/projects");
    println!(
        "          curl -H '{header}' -H 'content-type: application/json' \
         -d '{{\"name\":\"Weather app\"}}' {base}/projects"
    );
    axum::serve(listener, app::router(db))
        .with_graceful_shutdown(async {
            // Ctrl-C, or a failing signal handler: stop accepting, finish what is in flight.
            let _ = tokio::signal::ctrl_c().await;
            println!("stopping");
        })
        .await?;
    Ok(())
}
