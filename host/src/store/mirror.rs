//! The store as the working copy of a state of record kept elsewhere (a cluster's etcd).
//!
//! A domain's record is its rows: the domain, its configs and engine versions, its live
//! instances with their launches, and its pushed readings, each under a key of its own
//! (`row`, `cfg/V`, `ver/N`, `inst/ID`, `launch/ID`, `push/NAME`) as a JSON object of its
//! columns. Once a [`Mirror`] is set, every write to a domain computes the domain's rows after
//! the write, hands what differs from the last record to the mirror *inside* the local
//! transaction, and commits locally only if the mirror took it. A domain that is not mirrored
//! (not owned by this node) cannot be written. A write that changes no row writes nothing to
//! the record.
//!
//! Rows that only mean something to one store stay out of the record: the sequence numbers of
//! the local event log (`last_decide_seq`, `changed_seq`) and the time of the last heartbeat.
//! [`Store::import_domain`] sets them afresh, as a restart would find them.

use super::Store;
use crate::model::{now, InstanceState};
use anyhow::{bail, Context, Result};
use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{params_from_iter, Connection, Transaction};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A domain's record: key (relative to the domain) → the row as JSON.
pub type Rows = BTreeMap<String, Vec<u8>>;

/// Where a domain's rows are kept first.
pub trait Mirror: Send + Sync {
    /// Puts and deletes rows of `domain` in the record, all or nothing. An error aborts the
    /// local write.
    fn write(&self, domain: &str, put: &[(&str, &[u8])], delete: &[&str]) -> Result<()>;
}

/// One table of a domain's record.
struct Table {
    name: &'static str,
    /// The column that names the domain.
    domain: &'static str,
    /// The key prefix of its rows, and the column whose value ends the key (none: one row).
    key: (&'static str, Option<&'static str>),
    /// Which of the domain's rows belong to the record.
    filter: &'static str,
    /// Columns left out of the record.
    skip: &'static [&'static str],
}

const LIVE: i64 = InstanceState::Terminated as i64;

const TABLES: &[Table] = &[
    Table {
        name: "domains",
        domain: "name",
        key: ("row", None),
        filter: "",
        skip: &["last_decide_seq"],
    },
    Table {
        name: "engine_configs",
        domain: "domain",
        key: ("cfg/", Some("version")),
        filter: "",
        skip: &[],
    },
    Table {
        name: "deployables",
        domain: "domain",
        key: ("dep/", Some("version")),
        filter: "",
        skip: &[],
    },
    Table {
        name: "engine_versions",
        domain: "domain",
        key: ("ver/", Some("seq")),
        filter: "",
        skip: &[],
    },
    Table {
        name: "instances",
        domain: "domain",
        key: ("inst/", Some("id")),
        filter: "AND state_ord < ?2",
        skip: &["last_heartbeat", "changed_seq"],
    },
    Table {
        name: "launches",
        domain: "domain",
        key: ("launch/", Some("launch_id")),
        filter: "AND launch_id IN (SELECT launch_id FROM instances WHERE domain = ?1 \
                 AND state_ord < ?2)",
        skip: &[],
    },
    Table {
        name: "pushed_readings",
        domain: "domain",
        key: ("push/", Some("name")),
        filter: "",
        skip: &[],
    },
];

/// The mirror and the rows it holds of each domain this store may write.
pub(super) struct Mirrored {
    to: Box<dyn Mirror>,
    domains: Mutex<HashMap<String, Rows>>,
}

impl Mirrored {
    /// Hands `domain`'s changed rows to the mirror from inside the write's transaction;
    /// returns the rows to remember once it commits (none when nothing changed).
    fn sync(&self, tx: &Transaction, domain: &str) -> Result<Option<Rows>> {
        let domains = self.domains.lock().unwrap_or_else(|e| e.into_inner());
        let Some(before) = domains.get(domain) else {
            bail!("domain '{domain}' is not owned by this node");
        };
        let after = export_in(tx, domain)?;
        let put: Vec<(&str, &[u8])> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let delete: Vec<&str> = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(String::as_str)
            .collect();
        if put.is_empty() && delete.is_empty() {
            return Ok(None);
        }
        self.to.write(domain, &put, &delete)?;
        Ok(Some(after))
    }
}

impl Store {
    /// Makes every later domain write go to `mirror` first (see the module doc).
    pub fn set_mirror(&self, mirror: Box<dyn Mirror>) {
        let mirrored = Mirrored {
            to: mirror,
            domains: Mutex::default(),
        };
        if self.mirror.set(mirrored).is_err() {
            tracing::warn!("the store's mirror was set twice; the first stays");
        }
    }

    /// The write helper of every domain write: `f` returns its result and the domain it
    /// wrote (none: it wrote nothing). With a mirror, the domain's changed rows go to it
    /// before the local commit.
    pub(super) fn with_domain_write<T>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<(T, Option<String>)>,
    ) -> Result<T> {
        let mut synced = None;
        let (out, domain) = self.with_tx(|tx| {
            let (out, domain) = f(tx)?;
            if let (Some(m), Some(d)) = (self.mirror.get(), &domain) {
                synced = m.sync(tx, d)?;
            }
            Ok((out, domain))
        })?;
        if let Some(d) = domain {
            if let (Some(m), Some(rows)) = (self.mirror.get(), synced) {
                let mut domains = m.domains.lock().unwrap_or_else(|e| e.into_inner());
                if domains.contains_key(&d) {
                    domains.insert(d.clone(), rows);
                }
            }
            self.touched(&d);
        }
        Ok(out)
    }

    /// The record of a domain as this store holds it (empty for an unknown domain).
    pub fn export_domain(&self, domain: &str) -> Result<Rows> {
        self.with_conn(|c| export_in(c, domain))
    }

    /// Replaces this store's copy of `domain` with `rows` (read from the record), and lets
    /// the domain be written through the mirror from now on. Its instances count as changed
    /// since the last decide, and their heartbeats as just seen.
    pub fn import_domain(&self, domain: &str, rows: &Rows) -> Result<()> {
        let exported = self.with_tx(|tx| {
            delete_in(tx, domain)?;
            let seq: i64 =
                tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
            for (key, row) in rows {
                import_row(tx, domain, key, row, seq)
                    .with_context(|| format!("importing '{key}' of domain '{domain}'"))?;
            }
            export_in(tx, domain)
        })?;
        if let Some(m) = self.mirror.get() {
            let mut domains = m.domains.lock().unwrap_or_else(|e| e.into_inner());
            domains.insert(domain.to_string(), exported);
        }
        self.touched(domain);
        Ok(())
    }

    /// Drops this store's copy of `domain` (another node owns it now); the record and the
    /// local event log keep it.
    pub fn forget_domain(&self, domain: &str) -> Result<()> {
        if let Some(m) = self.mirror.get() {
            let mut domains = m.domains.lock().unwrap_or_else(|e| e.into_inner());
            domains.remove(domain);
        }
        self.with_tx(|tx| delete_in(tx, domain))?;
        self.touched(domain);
        Ok(())
    }
}

/// Deletes every row of `domain` (its instances of every state too), but not its events.
fn delete_in(tx: &Transaction, domain: &str) -> Result<()> {
    for t in TABLES {
        tx.execute(
            &format!("DELETE FROM {} WHERE {} = ?1", t.name, t.domain),
            [domain],
        )?;
    }
    Ok(())
}

/// The record of `domain` as `c` holds it.
fn export_in(c: &Connection, domain: &str) -> Result<Rows> {
    let mut rows = Rows::new();
    for t in TABLES {
        let sql = format!(
            "SELECT * FROM {} WHERE {} = ?1 {}",
            t.name, t.domain, t.filter
        );
        let mut stmt = c.prepare_cached(&sql)?;
        let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let mut query = if t.filter.contains("?2") {
            stmt.query(rusqlite::params![domain, LIVE])?
        } else {
            stmt.query([domain])?
        };
        while let Some(r) = query.next()? {
            let mut object = Map::new();
            let mut key = t.key.0.to_string();
            for (i, name) in names.iter().enumerate() {
                let value = to_json(r.get_ref(i)?);
                if Some(name.as_str()) == t.key.1 {
                    match &value {
                        Value::String(s) => key.push_str(s),
                        other => key.push_str(&other.to_string()),
                    }
                }
                if !t.skip.contains(&name.as_str()) {
                    object.insert(name.clone(), value);
                }
            }
            rows.insert(key, serde_json::to_vec(&object)?);
        }
    }
    // The floor of the domain's handles covers every instance it had, ended ones too, so that
    // a store that imports only the live ones never hands a used handle out again.
    if let Some(row) = rows.get_mut("row") {
        let max: i64 = c.query_row(
            "SELECT COALESCE(MAX(handle), 0) FROM instances WHERE domain = ?1",
            [domain],
            |r| r.get(0),
        )?;
        let mut object: Map<String, Value> = serde_json::from_slice(row)?;
        let floor = object
            .get("handle_floor")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        object.insert("handle_floor".into(), floor.max(max).into());
        *row = serde_json::to_vec(&object)?;
    }
    Ok(rows)
}

/// Inserts one row of the record; `seq` stands in for the local sequence numbers it lacks.
fn import_row(tx: &Transaction, domain: &str, key: &str, row: &[u8], seq: i64) -> Result<()> {
    let table = TABLES
        .iter()
        .find(|t| match t.key.1 {
            None => key == t.key.0,
            Some(_) => key.starts_with(t.key.0),
        })
        .with_context(|| format!("no table keeps rows like '{key}'"))?;
    let mut object: Map<String, Value> = serde_json::from_slice(row)?;
    if object.get(table.domain).and_then(Value::as_str) != Some(domain) {
        bail!("the row names another domain");
    }
    match table.name {
        "domains" => {
            object.insert("last_decide_seq".into(), 0.into());
        }
        "instances" => {
            object.insert("changed_seq".into(), seq.into());
            object.insert("last_heartbeat".into(), now().into());
        }
        _ => {}
    }
    let columns: Vec<&String> = object.keys().collect();
    let marks = vec!["?"; columns.len()].join(", ");
    let names: Vec<&str> = columns.iter().map(|c| c.as_str()).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        table.name,
        names.join(", ")
    );
    let values: Vec<Sql> = object.values().map(from_json).collect::<Result<_>>()?;
    tx.execute(&sql, params_from_iter(values))?;
    Ok(())
}

fn to_json(v: ValueRef) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => f.into(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => serde_json::json!({ "blob": hex::encode(b) }),
    }
}

fn from_json(v: &Value) -> Result<Sql> {
    Ok(match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().context("a number out of range")?),
        },
        Value::String(s) => Sql::Text(s.clone()),
        Value::Object(o) => match o.get("blob").and_then(Value::as_str) {
            Some(h) => Sql::Blob(hex::decode(h)?),
            None => bail!("an object where a column value was expected"),
        },
        Value::Array(_) => bail!("an array where a column value was expected"),
    })
}
