//! The store as a working copy: what goes to the mirror, and a domain moved between stores.

use super::{launch, spec, store};
use crate::model::InstanceState;
use crate::store::{Mirror, Rows, StateUpdate, Store};
use std::sync::{Arc, Mutex};

/// A record in memory that refuses writes while `fenced` is set.
#[derive(Default)]
struct Record {
    rows: Mutex<Rows>,
    writes: Mutex<usize>,
    fenced: Mutex<bool>,
}

struct To(Arc<Record>);

impl Mirror for To {
    fn write(&self, _domain: &str, put: &[(&str, &[u8])], delete: &[&str]) -> anyhow::Result<()> {
        anyhow::ensure!(!*self.0.fenced.lock().unwrap(), "fenced");
        let mut rows = self.0.rows.lock().unwrap();
        for (k, v) in put {
            rows.insert(k.to_string(), v.to_vec());
        }
        for k in delete {
            rows.remove(*k);
        }
        *self.0.writes.lock().unwrap() += 1;
        Ok(())
    }
}

fn mirrored(record: &Arc<Record>) -> (tempfile::TempDir, Store) {
    let (dir, s) = store();
    s.set_mirror(Box::new(To(record.clone())));
    (dir, s)
}

#[test]
fn a_domain_moves_between_stores_through_its_record_and_keeps_its_handles() {
    let (_a_dir, a) = store();
    a.insert_domain(&spec("d"), "sha").unwrap();
    launch(&a, "d", "i-1");
    launch(&a, "d", "i-2");
    a.advance("i-1", InstanceState::Failed, StateUpdate::error("gone"))
        .unwrap();
    let rows = a.export_domain("d").unwrap();
    assert!(rows.contains_key("row") && rows.contains_key("inst/i-2"));
    assert!(!rows.contains_key("inst/i-1"), "ended instances stay out");

    let record = Arc::new(Record::default());
    *record.rows.lock().unwrap() = rows.clone();
    let (_b_dir, b) = mirrored(&record);
    b.import_domain("d", &rows).unwrap();
    let live = b.live_instances(Some("d")).unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].vars, vec![("k".to_string(), "v".to_string())]);
    assert_eq!(b.domain("d").unwrap().unwrap().spec.config["preserve_n"], 1);
    assert_eq!(
        *record.writes.lock().unwrap(),
        0,
        "an import writes nothing"
    );

    // The next launch takes a handle past both earlier ones, the ended one too.
    launch(&b, "d", "i-3");
    let i3 = b.instance("i-3").unwrap().unwrap();
    assert_eq!(i3.handle, 3);
    assert_eq!(*record.writes.lock().unwrap(), 1);
    assert!(record.rows.lock().unwrap().contains_key("inst/i-3"));

    // A write that changes no row of the record writes nothing.
    b.touch_heartbeat("i-3", 1.0).unwrap();
    b.advance("i-3", InstanceState::Requesting, StateUpdate::default())
        .unwrap();
    assert_eq!(*record.writes.lock().unwrap(), 1);

    // An ended instance leaves the record.
    b.advance("i-3", InstanceState::Failed, StateUpdate::error("x"))
        .unwrap();
    assert!(!record.rows.lock().unwrap().contains_key("inst/i-3"));
}

#[test]
fn a_refused_record_write_leaves_the_store_as_it_was_and_unowned_domains_refuse_writes() {
    let (_a_dir, a) = store();
    a.insert_domain(&spec("d"), "sha").unwrap();
    let rows = a.export_domain("d").unwrap();
    let record = Arc::new(Record::default());
    let (_b_dir, b) = mirrored(&record);
    b.import_domain("d", &rows).unwrap();

    *record.fenced.lock().unwrap() = true;
    assert!(b
        .record_decision("d", 0, None, &[new("i-1")], None)
        .is_err());
    assert!(
        b.instance("i-1").unwrap().is_none(),
        "nothing was committed"
    );

    *record.fenced.lock().unwrap() = false;
    b.forget_domain("d").unwrap();
    assert!(b.domain("d").unwrap().is_none());
    let err = b.record_decision("d", 0, None, &[new("i-1")], None);
    assert!(format!("{:#}", err.unwrap_err()).contains("not owned"));
}

fn new(id: &str) -> crate::store::NewInstance {
    crate::store::NewInstance {
        id: id.into(),
        launch_id: "l".into(),
        vars: vec![],
        surge: false,
    }
}
