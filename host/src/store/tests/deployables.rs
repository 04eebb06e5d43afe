//! Deployable versions and refreshes in the store.

use super::{spec, store};
use crate::model::Deployable;

fn with_command(command: &str) -> Deployable {
    let mut d = spec("x").deployable;
    if let Deployable::Process(p) = &mut d {
        p.command = vec![command.into()];
    }
    d
}

#[test]
fn versions_count_up_and_a_rollback_goes_back_to_where_the_refresh_began() {
    let (_d, s) = store();
    s.insert_domain(&spec("a"), "sha").unwrap();
    assert_eq!(s.domain("a").unwrap().unwrap().deployable_version, 1);
    let err = s.start_refresh("a", 1, 100, true).unwrap_err();
    assert!(
        format!("{err:#}").contains("no version to roll back to"),
        "{err:#}"
    );

    assert_eq!(
        s.update_deployable("a", &with_command("/bin/v2")).unwrap(),
        2
    );
    assert_eq!(
        s.update_deployable("a", &with_command("/bin/v3")).unwrap(),
        3
    );
    let r = s.start_refresh("a", 2, 90, false).unwrap();
    assert_eq!((r.from_version, r.to_version, r.batch), (3, 3, 2));
    let kept = s.domain("a").unwrap().unwrap().refresh.unwrap();
    // Times go through JSON, which keeps them to a few digits past the microsecond.
    assert!((kept.started - r.started).abs() < 1e-3);
    assert_eq!((kept.from_version, kept.to_version, kept.batch), (3, 3, 2));
    assert_eq!(kept.min_healthy_percent, 90);

    // A rollback goes to the version before, and makes it current.
    let back = s.start_refresh("a", 1, 100, true).unwrap();
    assert_eq!((back.from_version, back.to_version), (3, 2));
    let d = s.domain("a").unwrap().unwrap();
    assert_eq!(d.deployable_version, 2);
    assert_eq!(d.spec.deployable, with_command("/bin/v2"));
    // Rolling back the rollback returns to where it began.
    let again = s.start_refresh("a", 1, 100, true).unwrap();
    assert_eq!(again.to_version, 3);
    s.end_refresh("a", &again, Ok(())).unwrap();
    assert!(s.domain("a").unwrap().unwrap().refresh.is_none());
    // A new version is past every stored one, whichever is current.
    s.start_refresh("a", 1, 100, true).unwrap();
    assert_eq!(
        s.update_deployable("a", &with_command("/bin/v4")).unwrap(),
        4
    );
}

#[test]
fn a_failed_refresh_is_kept_with_its_reason_and_versions_go_with_the_domain() {
    let (_d, s) = store();
    s.insert_domain(&spec("a"), "sha").unwrap();
    s.update_deployable("a", &with_command("/bin/v2")).unwrap();
    let r = s.start_refresh("a", 1, 100, false).unwrap();
    s.end_refresh("a", &r, Err("3 failed".into())).unwrap();
    let kept = s.domain("a").unwrap().unwrap().refresh.unwrap();
    assert_eq!(kept.failed.as_deref(), Some("3 failed"));
    s.delete_domain("a").unwrap();
    s.insert_domain(&spec("a"), "sha").unwrap();
    assert_eq!(
        s.update_deployable("a", &with_command("/bin/v2")).unwrap(),
        2
    );
}
