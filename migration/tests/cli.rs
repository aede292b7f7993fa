//! The `forge-migration` binary as a user runs it.

use std::path::PathBuf;

use forge_migration::{Migrator, MigratorTrait};

/// How many migrations the binary carries.
fn total() -> usize {
    Migrator::migrations().len()
}
use std::process::{Command, Output};

fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("forge-cli-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(dir: &PathBuf, url: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-migration"));
    cmd.current_dir(dir).args(args).env_remove("DATABASE_URL");
    if let Some(url) = url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn without_database_url_it_migrates_the_embedded_sqlite_file_and_says_so() {
    let dir = scratch_dir("default");
    let out = run(&dir, None, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("sqlite://forge.db?mode=rwc"), "{stdout}");
    assert!(stdout.contains("default"), "{stdout}");
    assert!(stdout.contains(&format!("{} applied", total())), "{stdout}");
    assert!(dir.join("forge.db").exists());

    let status = text(&run(&dir, None, &["status"]).stdout);
    assert_eq!(
        status.matches("applied  m2025").count(),
        total(),
        "{status}"
    );

    let down = run(&dir, None, &["down"]);
    assert!(
        text(&down.stdout).contains("1 rolled back"),
        "{}",
        text(&down.stdout)
    );
    let status = text(&run(&dir, None, &["status"]).stdout);
    assert_eq!(status.matches("pending  m2025").count(), 1, "{status}");

    let reset = run(&dir, None, &["reset"]);
    assert!(reset.status.success());
    let none = format!("0 of {} migrations now applied", total());
    assert!(text(&reset.stdout).contains(&none));

    let fresh = run(&dir, None, &["fresh"]);
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
    let refresh = run(&dir, None, &["refresh"]);
    assert!(refresh.status.success(), "{}", text(&refresh.stderr));
    let all = format!("{n} of {n} migrations now applied", n = total());
    assert!(text(&refresh.stdout).contains(&all));
    std::fs::remove_dir_all(&dir).ok();
}

fn assert_one_line_failure(out: &Output, expect: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expect), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_url_is_one_clear_line_and_exit_1() {
    let dir = scratch_dir("bad");
    assert_one_line_failure(
        &run(&dir, Some("mysql://db/forge"), &["status"]),
        "unsupported database URL",
    );
    assert_one_line_failure(
        &run(&dir, Some("not a url"), &["up"]),
        "unsupported database URL",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_unreachable_database_is_one_clear_line_and_exit_1() {
    let dir = scratch_dir("unreachable");
    let out = run(
        &dir,
        Some("postgres://forge:hunter2@127.0.0.1:1/forge"),
        &["status"],
    );
    assert_one_line_failure(
        &out,
        "cannot connect to postgres://forge:***@127.0.0.1:1/forge",
    );
    assert!(
        !text(&out.stderr).contains("hunter2"),
        "the password is never printed"
    );
    let out = run(&dir, Some("sqlite:///nonexistent-dir/forge.db"), &["up"]);
    assert_one_line_failure(&out, "cannot connect to sqlite:///nonexistent-dir/forge.db");
    std::fs::remove_dir_all(&dir).ok();
}
