//! The store's schema, as an ordered list of migrations. `PRAGMA user_version` holds how many
//! have been applied; a new schema version appends a migration and never edits an old one.

use anyhow::{bail, Context, Result};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE domains (
    name            TEXT PRIMARY KEY,
    engine_name     TEXT NOT NULL,
    engine_sha      TEXT NOT NULL,
    deployable      TEXT NOT NULL,
    health          TEXT NOT NULL,
    max_instances   INTEGER NOT NULL,
    pulse_ms        INTEGER NOT NULL,
    run             TEXT,
    config_version  INTEGER NOT NULL,
    memo            BLOB NOT NULL DEFAULT x'',
    last_decide_seq INTEGER NOT NULL DEFAULT 0,
    created         REAL NOT NULL
);
CREATE TABLE engine_configs (
    domain  TEXT NOT NULL,
    version INTEGER NOT NULL,
    config  TEXT NOT NULL,
    time    REAL NOT NULL,
    PRIMARY KEY (domain, version)
);
CREATE TABLE instances (
    id             TEXT PRIMARY KEY,
    domain         TEXT NOT NULL,
    launch_id      TEXT NOT NULL,
    state          TEXT NOT NULL,
    state_ord      INTEGER NOT NULL,
    state_time     REAL NOT NULL,
    health         TEXT NOT NULL,
    health_time    REAL NOT NULL,
    last_heartbeat REAL,
    vars           TEXT NOT NULL,
    pid            INTEGER,
    pid_start      INTEGER,
    error          TEXT,
    changed_seq    INTEGER NOT NULL,
    created        REAL NOT NULL
);
CREATE INDEX instances_by_domain ON instances (domain, state_ord);
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    time     REAL NOT NULL,
    domain   TEXT,
    instance TEXT,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE domains ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE domains ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;
ALTER TABLE domains ADD COLUMN preserve_target INTEGER;
CREATE TABLE engine_versions (
    domain TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    name   TEXT NOT NULL,
    sha    TEXT NOT NULL,
    time   REAL NOT NULL,
    PRIMARY KEY (domain, seq)
);
INSERT INTO engine_versions (domain, seq, name, sha, time)
    SELECT name, 1, engine_name, engine_sha, created FROM domains;
"#,
    r#"
ALTER TABLE domains ADD COLUMN sensors TEXT NOT NULL DEFAULT '[]';
CREATE TABLE pushed_readings (
    domain TEXT NOT NULL,
    name   TEXT NOT NULL,
    value  REAL NOT NULL,
    time   REAL NOT NULL,
    PRIMARY KEY (domain, name)
);
"#,
    r#"
ALTER TABLE instances ADD COLUMN handle INTEGER;
UPDATE instances SET handle = rowid;
CREATE UNIQUE INDEX instances_by_handle ON instances (handle);
"#,
    r#"
ALTER TABLE engine_versions ADD COLUMN config_version INTEGER;
"#,
    r#"
CREATE TABLE runs (
    name    TEXT PRIMARY KEY,
    plan    TEXT NOT NULL,
    state   TEXT NOT NULL,
    error   TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE run_levels (
    run     TEXT NOT NULL,
    level   INTEGER NOT NULL,
    state   TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (run, level)
);
CREATE TABLE run_services (
    run       TEXT NOT NULL,
    name      TEXT NOT NULL,
    level     INTEGER NOT NULL,
    state     TEXT NOT NULL,
    spec      TEXT NOT NULL,
    pid       INTEGER,
    pid_start INTEGER,
    updated   REAL NOT NULL,
    PRIMARY KEY (run, name)
);
CREATE TABLE run_attrs (
    run     TEXT NOT NULL,
    service TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (run, service, key)
);
CREATE TABLE run_domains (
    run    TEXT NOT NULL,
    domain TEXT NOT NULL,
    PRIMARY KEY (run, domain)
);
CREATE TABLE readings (
    domain TEXT NOT NULL,
    name   TEXT NOT NULL,
    time   REAL NOT NULL,
    value  REAL NOT NULL
);
CREATE INDEX readings_by_domain ON readings (domain, time);
ALTER TABLE events ADD COLUMN run TEXT;
INSERT INTO runs (name, plan, state, created, updated)
    SELECT run, '', 'booted', MIN(created), MIN(created) FROM domains
    WHERE run IS NOT NULL GROUP BY run;
INSERT INTO run_domains (run, domain) SELECT run, name FROM domains WHERE run IS NOT NULL;
"#,
    r#"
ALTER TABLE instances ADD COLUMN cloud_id TEXT;
"#,
    r#"
ALTER TABLE domains ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
"#,
    // A launch's vars are kept once per launch, not copied into each of its instances.
    r#"
CREATE TABLE launches (
    launch_id TEXT PRIMARY KEY,
    domain    TEXT NOT NULL,
    vars      TEXT NOT NULL
);
INSERT OR IGNORE INTO launches (launch_id, domain, vars)
    SELECT launch_id, domain, vars FROM instances;
UPDATE instances SET vars = '';
CREATE INDEX events_by_domain ON events (domain, seq);
"#,
    r#"
ALTER TABLE domains ADD COLUMN removing INTEGER NOT NULL DEFAULT 0;
CREATE TABLE flags (
    name TEXT PRIMARY KEY,
    time REAL NOT NULL
);
"#,
    // Instance handles count per domain (so a domain's rows can move between stores), and
    // the floor below which a domain's handles were used already (by instances that ended).
    r#"
DROP INDEX instances_by_handle;
CREATE UNIQUE INDEX instances_by_handle ON instances (domain, handle);
ALTER TABLE domains ADD COLUMN handle_floor INTEGER NOT NULL DEFAULT 0;
"#,
    // Where in a cluster a domain may run (a model::Placement as JSON).
    r#"
ALTER TABLE domains ADD COLUMN placement TEXT NOT NULL DEFAULT '{}';
"#,
    // Disruption budgets (a model::Budget as JSON), and protected instances.
    r#"
ALTER TABLE domains ADD COLUMN budget TEXT NOT NULL DEFAULT '{}';
ALTER TABLE instances ADD COLUMN protected INTEGER NOT NULL DEFAULT 0;
"#,
    // Drains: a domain's drain timeout, and each draining instance's deadline and whether its
    // worker said it is done.
    r#"
ALTER TABLE domains ADD COLUMN drain_timeout INTEGER;
ALTER TABLE instances ADD COLUMN drain_until REAL;
ALTER TABLE instances ADD COLUMN drained INTEGER NOT NULL DEFAULT 0;
"#,
    // Versions of a domain's deployable, each instance's version, and rolling refreshes (a
    // model::Refresh as JSON while one runs; `surge` marks a replacement not yet in service).
    r#"
CREATE TABLE deployables (
    domain TEXT NOT NULL,
    version INTEGER NOT NULL,
    deployable TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (domain, version)
);
INSERT INTO deployables (domain, version, deployable, time) SELECT name, 1, deployable, created FROM domains;
ALTER TABLE domains ADD COLUMN deployable_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE domains ADD COLUMN refresh TEXT;
ALTER TABLE instances ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE instances ADD COLUMN surge INTEGER NOT NULL DEFAULT 0;
"#,
    // Shadow engines: each with its config, how its decisions compared (model::ShadowStats as
    // JSON) and its own memo; the points of the counts both would keep, and the decision pairs
    // that differed (the newest of each are kept).
    r#"
CREATE TABLE shadows (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    domain      TEXT NOT NULL,
    engine_name TEXT NOT NULL,
    engine_sha  TEXT NOT NULL,
    config      TEXT NOT NULL,
    started     REAL NOT NULL,
    stopped     REAL,
    stats       TEXT NOT NULL DEFAULT '{}',
    memo        BLOB NOT NULL DEFAULT x''
);
CREATE INDEX shadows_by_domain ON shadows (domain);
CREATE TABLE shadow_points (
    shadow  INTEGER NOT NULL,
    time    REAL NOT NULL,
    live    INTEGER NOT NULL,
    candidate INTEGER NOT NULL
);
CREATE INDEX shadow_points_by_shadow ON shadow_points (shadow, time);
CREATE TABLE shadow_pairs (
    shadow    INTEGER NOT NULL,
    time      REAL NOT NULL,
    live      TEXT NOT NULL,
    candidate TEXT NOT NULL
);
CREATE INDEX shadow_pairs_by_shadow ON shadow_pairs (shadow, time);
"#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`], each migration in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, VERSION)
}

/// Brings the database up to schema `target` (the tests make stores of every earlier version).
pub(super) fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > VERSION {
        bail!(
            "the state was written by a newer epu (schema {current}, this build knows {VERSION})"
        );
    }
    let wanted = (target - current).max(0) as usize;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(current as usize)
        .take(wanted)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("applying schema migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
