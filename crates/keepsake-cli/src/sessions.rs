//! `keepsake sessions --store URL <command>`: administer a session store.
//!
//! The store is named by a URL, as `keepsake::store::StoreUrl` parses it
//! (`sqlite://PATH`, `redis://HOST[:PORT][/DB][?prefix=P]`,
//! `postgres://USER@HOST[:PORT]/DB[?schema=S][&table=T]`, `memory://`), from `--store`
//! or the `KEEPSAKE_STORE` environment variable. Every walk over the store
//! goes page by page (`StoreAdmin::page`), so a store of a million sessions
//! is never loaded at once.
//!
//! Text from the store (user names) is printed with control characters and
//! Unicode format characters escaped ([`escape_text`]; `show` escapes
//! them in its JSON as `\uXXXX`), so a stored value
//! can neither forge rows of the tab-separated output nor drive the
//! terminal.
//!
//! A record the store holds but cannot read (written by another app or an
//! older version, a value changed by hand, an id that is not a keepsake
//! session id) does not stop `list` or `stats`: it is left out, with a
//! warning line on stderr naming it by its id as stored (the operator needs
//! it to find or remove the record; `show` prints ids too), and `stats`
//! counts such records. `revoke --raw ID` removes one whose stored id is not
//! a keepsake session id (`legacy-session-1`; on Redis, `garbage` for the
//! key `<prefix>session:garbage`). The walk uses the stores'
//! `page_skipping_unreadable`, and `revoke --raw` their `delete_stored`
//! (inherent methods: the `StoreAdmin` trait has neither); a memory store
//! holds only records it can read.
//!
//! `--now` (for tests and inspection) moves the clock for `list`, `show` and
//! `stats`; `purge` refuses a `--now` later than the system clock, which
//! would delete live sessions, and `revoke-user` does not use it.
//!
//! Exit status: 0 success (also when `list` or `stats` left unreadable
//! records out); 1 when `show`, `revoke` or `revoke-user` finds nothing; 2
//! for usage errors and a store that cannot be opened, reached or read.

use std::{
    borrow::Cow,
    collections::HashMap,
    io::{self, IsTerminal as _, Write},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use keepsake::{
    codec::unix_now,
    store::{
        AnyStore, Cursor, Id, Page, Record, SessionStore as _, StoreAdmin as _, StoreError,
        StoreUrl,
    },
};
use serde_json::Value;

use crate::{
    Rejected,
    terminal::{escape_text, write_json_line},
};

/// Records read per page when walking the whole store.
const PAGE: usize = 500;

/// Arguments of `keepsake sessions`.
#[derive(Debug, Args)]
pub(crate) struct SessionsArgs {
    /// The session store: sqlite://PATH, redis://HOST[:PORT][/DB][?prefix=P],
    /// postgres://USER@HOST[:PORT]/DB[?schema=S&table=T] or memory://
    /// (default: the KEEPSAKE_STORE environment variable).
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
    /// The current time for expiry, in Unix seconds (default: the system
    /// clock). `purge` refuses a time later than the system clock, and
    /// `revoke-user` does not use it.
    #[arg(long, value_name = "UNIX", global = true)]
    now: Option<u64>,
    /// What to do.
    #[command(subcommand)]
    command: SessionsCommand,
}

/// The `sessions` subcommands.
#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List sessions, one per line: id, user, created, expires, state.
    ///
    /// Without --user every record is listed, expired ones not yet purged
    /// included; with --user only that user's live sessions. A record the
    /// store cannot read is left out, with a warning on stderr that gives
    /// its stored id (see `revoke --raw`).
    List {
        /// Only this user's live sessions.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Show one session (expired or not) as JSON, data included.
    Show {
        /// The session id (it may begin with '-').
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Delete one session. Exits 1 if there is none with this id.
    ///
    /// With --raw, ID is taken exactly as the store holds it, even if it is
    /// not a keepsake session id: how a record that `list` or `stats`
    /// reported as unreadable is removed (for example `legacy-session-1`,
    /// or, on Redis, `garbage` for the key `<prefix>session:garbage`).
    Revoke {
        /// The session id (it may begin with '-').
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Take ID exactly as stored (no trimming, no check that it is a
        /// keepsake session id).
        #[arg(long)]
        raw: bool,
    },
    /// Delete every session of a user ("log out everywhere"). Exits 1 if
    /// the user has none.
    ///
    /// --now does not apply: every session of the user goes, live or
    /// expired.
    RevokeUser {
        /// The user (it may begin with '-').
        #[arg(allow_hyphen_values = true)]
        user: String,
    },
    /// Delete the expired sessions, in batches, showing progress on stderr.
    ///
    /// --now may be earlier than the system clock (to purge only sessions
    /// expired by then), never later: that would delete live sessions.
    Purge {
        /// Sessions deleted per batch.
        #[arg(long, value_name = "N", default_value_t = 1_000)]
        batch: usize,
    },
    /// Count sessions (total, live, expired) and show the users with the
    /// most live sessions.
    ///
    /// `unreadable` counts the records the store holds but cannot read
    /// (each also named in a warning on stderr); they are counted in
    /// `sessions` too, and in `live` or `expired` as far as the store can
    /// tell their deadline.
    Stats {
        /// How many users to show.
        #[arg(long, value_name = "N", default_value_t = 10)]
        top: usize,
    },
}

/// Runs `keepsake sessions`, writing results to `out`.
pub(crate) fn run(args: SessionsArgs, out: &mut impl Write) -> Result<()> {
    let url = match args.store {
        Some(url) => url,
        None => match std::env::var("KEEPSAKE_STORE") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                return Err(anyhow!(
                    "no session store: pass --store URL or set KEEPSAKE_STORE"
                ));
            }
        },
    };
    let clock = unix_now();
    let now = args.now.unwrap_or(clock);
    if matches!(args.command, SessionsCommand::Purge { .. }) && now > clock {
        bail!(
            "purge refuses --now {now}: it is later than the system clock ({clock}), so \
             sessions still live would be deleted; omit --now, or give an earlier time"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let url = StoreUrl::parse(&url)?;
    // The store must exist: a mistyped path, schema or table is an error,
    // not a new store, and another app's database is left as it was.
    if let StoreUrl::Sqlite { path } = &url
        && path != ":memory:"
        && !Path::new(path).exists()
    {
        bail!("no SQLite database at {path}");
    }
    runtime.block_on(async move {
        let store = url.open_existing().await?;
        execute(&store, args.command, now, out).await
    })
}

async fn execute(
    store: &AnyStore,
    command: SessionsCommand,
    now: u64,
    out: &mut impl Write,
) -> Result<()> {
    match command {
        SessionsCommand::List { user } => {
            writeln!(out, "ID\tUSER\tCREATED\tEXPIRES\tSTATE")?;
            match user {
                Some(user) => {
                    let (records, skipped) = user_sessions(store, &user, now)
                        .await
                        .context("listing the user's sessions failed")?;
                    for record in &records {
                        write_line(out, record, now)?;
                    }
                    sum_up_unreadable(warn_unreadable(skipped));
                }
                None => {
                    let mut cursor = None;
                    let mut unreadable = 0;
                    loop {
                        let (page, skipped) = page_of(store, cursor.as_ref())
                            .await
                            .context("listing sessions failed")?;
                        unreadable += warn_unreadable(skipped);
                        for record in &page.records {
                            write_line(out, record, now)?;
                        }
                        match page.next {
                            Some(next) => cursor = Some(next),
                            None => break,
                        }
                    }
                    sum_up_unreadable(unreadable);
                }
            }
        }
        SessionsCommand::Show { id } => {
            let id = parse_id(&id)?;
            // Time 0 has not reached any deadline, so an expired record not
            // yet purged is shown too (and marked expired).
            let record = store
                .load(&id, 0)
                .await
                .context("reading the session failed")?
                .ok_or_else(|| Rejected("no session with this id".to_owned()))?;
            let mut json = serde_json::to_value(&record)?;
            if let Value::Object(fields) = &mut json {
                fields.insert("deadline".to_owned(), record.deadline().into());
                fields.insert("expired".to_owned(), record.is_expired_at(now).into());
            }
            write_json_line(out, &serde_json::to_string_pretty(&json)?)?;
        }
        SessionsCommand::Revoke { id, raw } => {
            let deleted = if raw {
                delete_stored(store, &id).await
            } else {
                let id = id.trim().parse::<Id>().with_context(|| {
                    format!(
                        "invalid session id {id:?} (a record stored under an id that is not \
                         a keepsake session id, as `list` may report, is revoked with --raw)"
                    )
                })?;
                store.delete(&id).await
            };
            if !deleted.context("deleting the session failed")? {
                return Err(Rejected("no session with this id".to_owned()).into());
            }
            writeln!(out, "revoked 1 session")?;
        }
        SessionsCommand::RevokeUser { user } => {
            let revoked = store
                .delete_user(&user)
                .await
                .context("deleting the user's sessions failed")?;
            if revoked == 0 {
                return Err(Rejected(format!("user {user:?} has no sessions")).into());
            }
            let plural = if revoked == 1 { "" } else { "s" };
            writeln!(out, "revoked {revoked} session{plural} of user {user:?}")?;
        }
        SessionsCommand::Purge { batch } => {
            let purged = purge(store, now, batch.max(1)).await?;
            let plural = if purged == 1 { "" } else { "s" };
            writeln!(out, "purged {purged} expired session{plural}")?;
        }
        SessionsCommand::Stats { top } => stats(store, now, top, out).await?,
    }
    out.flush()?;
    Ok(())
}

/// One page of `store` (at most [`PAGE`] records), leaving out the records
/// the store cannot read, which come back as errors beside the page.
async fn page_of(
    store: &AnyStore,
    cursor: Option<&Cursor>,
) -> Result<(Page, Vec<StoreError>), StoreError> {
    match store {
        AnyStore::Sqlite(store) => store.page_skipping_unreadable(cursor, PAGE).await,
        AnyStore::Redis(store) => store.page_skipping_unreadable(cursor, PAGE).await,
        AnyStore::Postgres(store) => store.page_skipping_unreadable(cursor, PAGE).await,
        // A memory store holds only records it can read.
        other => Ok((other.page(cursor, PAGE).await?, Vec::new())),
    }
}

/// The live sessions of `user`, and the errors of the user's records the
/// store cannot read (as [`page_of`]).
async fn user_sessions(
    store: &AnyStore,
    user: &str,
    now: u64,
) -> Result<(Vec<Record>, Vec<StoreError>), StoreError> {
    match store {
        AnyStore::Sqlite(store) => store.list_user_skipping_unreadable(user, now).await,
        AnyStore::Redis(store) => store.list_user_skipping_unreadable(user, now).await,
        AnyStore::Postgres(store) => store.list_user_skipping_unreadable(user, now).await,
        other => Ok((other.list_user(user, now).await?, Vec::new())),
    }
}

/// Deletes the record stored under `stored_id`, which need not be a
/// keepsake session id; whether there was one.
async fn delete_stored(store: &AnyStore, stored_id: &str) -> Result<bool, StoreError> {
    match store {
        AnyStore::Sqlite(store) => store.delete_stored(stored_id).await,
        AnyStore::Redis(store) => store.delete_stored(stored_id).await,
        AnyStore::Postgres(store) => store.delete_stored(stored_id).await,
        // A memory store holds records under valid ids only.
        other => match stored_id.parse::<Id>() {
            Ok(id) if id.to_string() == stored_id => other.delete(&id).await,
            _ => Ok(false),
        },
    }
}

/// Warns on stderr of each record a walk left out because the store
/// cannot read it, naming it by its stored id (for `revoke --raw`); how
/// many there were.
fn warn_unreadable(errors: Vec<StoreError>) -> u64 {
    let mut count = 0;
    for err in errors {
        count += 1;
        // A warning that cannot be written (stderr closed) stops nothing.
        let _ = writeln!(
            io::stderr(),
            "keepsake: warning: left out a session record the store cannot read: {}",
            crate::error_text(&anyhow::Error::new(err))
        );
    }
    count
}

/// After a walk that left `count` unreadable records out: one warning line
/// on what to do about them.
fn sum_up_unreadable(count: u64) {
    if count > 0 {
        let (records, them) = if count == 1 {
            ("record", "it")
        } else {
            ("records", "them")
        };
        let _ = writeln!(
            io::stderr(),
            "keepsake: warning: {count} unreadable session {records} left out; \
             `keepsake sessions revoke --raw ID` removes {them} by the session id shown"
        );
    }
}

/// Parses a session id given on the command line (a usage error if bad).
fn parse_id(text: &str) -> Result<Id> {
    text.trim()
        .parse()
        .with_context(|| format!("invalid session id {text:?}"))
}

/// One line of `list`.
fn write_line(out: &mut impl Write, record: &Record, now: u64) -> io::Result<()> {
    let state = if record.is_expired_at(now) {
        "expired"
    } else {
        "live"
    };
    writeln!(
        out,
        "{}\t{}\t{}\t{}\t{state}",
        record.id,
        record
            .user
            .as_deref()
            .map_or(Cow::Borrowed("-"), escape_text),
        utc(record.created_at),
        utc(record.deadline()),
    )
}

/// Progress of a purge: a bar on a terminal, plain lines (at most one a
/// second, and the last) otherwise.
enum Progress {
    Bar(ProgressBar),
    Lines { last: Instant, total: u64 },
}

impl Progress {
    fn new(total: u64) -> Self {
        if io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "purging {bar:40.cyan/blue} {human_pos}/{human_len} expired sessions ({eta} left)",
            ) {
                bar.set_style(style);
            }
            Self::Bar(bar)
        } else {
            eprintln!("purging {total} expired sessions");
            Self::Lines {
                last: Instant::now(),
                total,
            }
        }
    }

    fn update(&mut self, purged: u64) {
        match self {
            Self::Bar(bar) => {
                if purged > bar.length().unwrap_or(0) {
                    bar.set_length(purged);
                }
                bar.set_position(purged);
            }
            Self::Lines { last, total } => {
                if last.elapsed() >= Duration::from_secs(1) {
                    eprintln!("purged {purged} of {}", (*total).max(purged));
                    *last = Instant::now();
                }
            }
        }
    }

    fn finish(self, purged: u64) {
        match self {
            Self::Bar(bar) => bar.finish_and_clear(),
            Self::Lines { total, .. } => eprintln!("purged {purged} of {}", total.max(purged)),
        }
    }
}

/// Purges in steps of `batch`, showing progress; the total.
async fn purge(store: &AnyStore, now: u64, batch: usize) -> Result<u64> {
    let expired = store
        .count(now)
        .await
        .context("counting expired sessions failed")?
        .expired;
    let mut progress = Progress::new(expired);
    let mut purged = 0u64;
    let mut cursor = None;
    loop {
        let step = match store.purge_step(now, cursor.as_ref(), batch).await {
            Ok(step) => step,
            Err(err) => {
                progress.finish(purged);
                return Err(err).context(format!(
                    "purging failed after {purged} expired sessions were deleted"
                ));
            }
        };
        purged += step.purged as u64;
        progress.update(purged);
        match step.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    progress.finish(purged);
    Ok(purged)
}

/// `stats`: counts, then a walk to find the users with the most live
/// sessions.
async fn stats(store: &AnyStore, now: u64, top: usize, out: &mut impl Write) -> Result<()> {
    let counts = store.count(now).await.context("counting sessions failed")?;
    let mut users: HashMap<String, u64> = HashMap::new();
    let mut anonymous = 0u64;
    let mut unreadable = 0u64;
    let mut cursor = None;
    loop {
        let (page, skipped) = page_of(store, cursor.as_ref())
            .await
            .context("reading sessions failed")?;
        unreadable += warn_unreadable(skipped);
        for record in page.records.iter().filter(|r| !r.is_expired_at(now)) {
            match &record.user {
                Some(user) => *users.entry(user.clone()).or_default() += 1,
                None => anonymous += 1,
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    writeln!(out, "sessions: {}", counts.total)?;
    writeln!(out, "live: {}", counts.live())?;
    writeln!(out, "expired: {}", counts.expired)?;
    writeln!(out, "unreadable: {unreadable}")?;
    writeln!(out, "users: {}", users.len())?;
    writeln!(out, "live without a user: {anonymous}")?;
    let mut ranked: Vec<(String, u64)> = users.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    writeln!(out, "top users:")?;
    for (user, sessions) in ranked.into_iter().take(top) {
        writeln!(out, "  {}\t{sessions}", escape_text(&user))?;
    }
    sum_up_unreadable(unreadable);
    Ok(())
}

/// Unix seconds as an RFC 3339 UTC time (`2026-01-31T12:00:00Z`).
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rest = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(253_402_300_799), "9999-12-31T23:59:59Z");
    }
}
