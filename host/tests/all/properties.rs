//! Fuzzing of the files users hand to epu: launch plans and engine scenarios. Each case takes a
//! real file (a bundled plan, a bundled scenario) and mutates it: first as a TOML document
//! (values removed or replaced with hostile ones, array items repeated, keys added), so most
//! mutants reach the validator; then sometimes as text (lines deleted, repeated, swapped,
//! snippets and garbage inserted, the text cut short). Whatever comes out, loading it must return a plan or an error that names the file;
//! it must never panic. A scenario that loads is also replayed on the bundled engines, which
//! must return results or an error, never panic the host.
//!
//! Cases per target: 400 by default; `PROPTEST_CASES=N` for a longer session. A failing case is
//! kept in `proptest-regressions/` and replayed first from then on.

use epu::engine::EngineHost;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Values that have broken parsers before or might: empty, huge, negative, non-finite, wrong
/// types, malformed references, unicode.
const VALUES: &[&str] = &[
    "\"\"",
    "0",
    "-1",
    "18446744073709551616",
    "1e400",
    "nan",
    "-inf",
    "true",
    "[]",
    "[[]]",
    "{}",
    "{ a = 1 }",
    "\"${kv.port}\"",
    "\"${kv}\"",
    "\"${\"",
    "\"${}\"",
    "\"${a.b.c}\"",
    "\"${nope.port}\"",
    "\"é\u{1F600}\u{0}\"",
    "[\"/bin/sh\", \"-c\", \"exit 3\"]",
    "\"../../../../etc/passwd\"",
    "\"a b\"",
    "1979-05-27T07:32:00Z",
];

/// Lines to insert: headers, keys, garbage.
const SNIPPETS: &[&str] = &[
    "[[level]]",
    "[[level.service]]",
    "[[domain]]",
    "[[domain.sensor]]",
    "[domain.process]",
    "[domain.ec2]",
    "[[step]]",
    "name = \"kv\"",
    "name = \"x\"",
    "start = [\"./kv.py\"]",
    "publishes = [\"port\"]",
    "deps = { P = \"${kv.port}\" }",
    "engine = \"npreserving\"",
    "kind = \"pushed\"",
    "now = 1.0",
    "instances = [{ handle = 1, state = \"running\" }]",
    "memo_hex = \"zz\"",
    "é = 1",
    "\"é\" = 1",
    "[",
    "]]",
    "= 1",
    "\u{feff}",
    "\t\t",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize),
    Repeat(usize),
    Swap(usize, usize),
    /// Replace what follows the first `=` of a line.
    Value(usize, usize),
    Insert(usize, usize),
    Garbage(usize, String),
    Cut(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Repeat),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), 0..VALUES.len()).prop_map(|(l, v)| Mutation::Value(l, v)),
        (any::<usize>(), 0..SNIPPETS.len()).prop_map(|(l, s)| Mutation::Insert(l, s)),
        (any::<usize>(), ".{0,24}").prop_map(|(l, g)| Mutation::Garbage(l, g)),
        any::<usize>().prop_map(Mutation::Cut),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        let n = lines.len().max(1);
        match m {
            Mutation::Delete(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Mutation::Repeat(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Mutation::Value(i, v) if !lines.is_empty() => {
                let l = &mut lines[i % n];
                if let Some(eq) = l.find('=') {
                    *l = format!("{}= {}", &l[..eq], VALUES[*v]);
                }
            }
            Mutation::Insert(i, s) => lines.insert(i % (lines.len() + 1), SNIPPETS[*s].into()),
            Mutation::Garbage(i, g) => lines.insert(i % (lines.len() + 1), g.clone()),
            Mutation::Cut(at) => {
                let text = lines.join("\n");
                let mut cut = at % (text.len() + 1);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                lines = text[..cut].lines().map(str::to_string).collect();
            }
            _ => {}
        }
    }
    lines.join("\n")
}

/// A change to a parsed TOML document, so the mutant stays valid TOML and reaches the
/// validator: a value removed, replaced, an array item repeated, a key added.
#[derive(Clone, Debug)]
enum Edit {
    Remove(usize),
    Replace(usize, usize),
    Repeat(usize),
    Add(usize, usize, usize),
}

const KEYS: &[&str] = &[
    "bogus",
    "name",
    "start",
    "deps",
    "publishes",
    "ready",
    "terminate",
    "engine",
    "config",
    "env",
    "command",
    "level",
    "domain",
    "service",
    "sensor",
    "process",
    "health",
    "now",
    "instances",
    "memo",
    "memo_hex",
    "expect",
    "full",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), 0..VALUES.len()).prop_map(|(p, v)| Edit::Replace(p, v)),
        any::<usize>().prop_map(Edit::Repeat),
        (any::<usize>(), 0..KEYS.len(), 0..VALUES.len()).prop_map(|(p, k, v)| Edit::Add(p, k, v)),
    ]
}

/// Every value's path in a document, as keys and indexes.
fn paths(v: &toml::Value, at: Vec<toml::Value>, out: &mut Vec<Vec<toml::Value>>) {
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                let mut p = at.clone();
                p.push(toml::Value::String(k.clone()));
                paths(child, p.clone(), out);
                out.push(p);
            }
        }
        toml::Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let mut p = at.clone();
                p.push(toml::Value::Integer(i as i64));
                paths(child, p.clone(), out);
                out.push(p);
            }
        }
        _ => {}
    }
}

/// The parent of `path` and the last step to it.
fn parent<'a>(
    root: &'a mut toml::Value,
    path: &[toml::Value],
) -> Option<(&'a mut toml::Value, toml::Value)> {
    let (last, up) = path.split_last()?;
    let mut v = root;
    for step in up {
        v = match step {
            toml::Value::String(k) => v.get_mut(k.as_str())?,
            toml::Value::Integer(i) => v.get_mut(*i as usize)?,
            _ => return None,
        };
    }
    Some((v, last.clone()))
}

fn value(i: usize) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {}", VALUES[i]))
        .map(|mut t| t.remove("v").unwrap())
        .unwrap_or(toml::Value::String(VALUES[i].into()))
}

/// Applies `edits` to `text` as TOML (the text as it is if it does not parse).
fn edit_toml(text: &str, edits: &[Edit]) -> String {
    let Ok(mut doc) = toml::from_str::<toml::Value>(text) else {
        return text.to_string();
    };
    for e in edits {
        let mut all = Vec::new();
        paths(&doc, Vec::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let pick = |i: &usize| all[i % all.len()].clone();
        match e {
            Edit::Remove(i) | Edit::Replace(i, _) | Edit::Repeat(i) => {
                let path = pick(i);
                let Some((up, last)) = parent(&mut doc, &path) else {
                    continue;
                };
                match (up, last, e) {
                    (toml::Value::Table(t), toml::Value::String(k), Edit::Remove(_)) => {
                        t.remove(&k);
                    }
                    (toml::Value::Table(t), toml::Value::String(k), Edit::Replace(_, v)) => {
                        t.insert(k, value(*v));
                    }
                    (toml::Value::Array(a), toml::Value::Integer(n), Edit::Remove(_)) => {
                        a.remove(n as usize);
                    }
                    (toml::Value::Array(a), toml::Value::Integer(n), Edit::Replace(_, v)) => {
                        a[n as usize] = value(*v);
                    }
                    (toml::Value::Array(a), toml::Value::Integer(n), Edit::Repeat(_)) => {
                        let item = a[n as usize].clone();
                        a.push(item);
                    }
                    _ => {}
                }
            }
            Edit::Add(i, k, v) => {
                let path = pick(i);
                let Some((up, last)) = parent(&mut doc, &path) else {
                    continue;
                };
                let target = match last {
                    toml::Value::String(key) => up.get_mut(key.as_str()),
                    toml::Value::Integer(n) => up.get_mut(n as usize),
                    _ => None,
                };
                if let Some(toml::Value::Table(t)) = target {
                    t.insert(KEYS[*k].into(), value(*v));
                }
            }
        }
    }
    toml::to_string(&doc).unwrap_or_else(|_| text.to_string())
}

/// A mutant: edits to the document, then some to its text.
fn mutant(text: &str, edits: &[Edit], mutations: &[Mutation]) -> String {
    mutate(&edit_toml(text, edits), mutations)
}

/// A copy of a bundled plan's directory (its programs included), to write mutants into.
fn plan_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo().join("launch-plans").join(name)).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    dir
}

const PLANS: &[&str] = &["quickstart", "two-level-demo", "queue-workers", "ec2-moto"];

proptest! {
    #![proptest_config(ProptestConfig {
        cases: epu::proptest_cases(400),
        ..ProptestConfig::default()
    })]

    /// Any mutant of a bundled plan loads to a plan or to an error naming the plan file.
    #[test]
    fn a_mutated_plan_loads_or_is_refused_with_its_file_named(
        which in 0..PLANS.len(),
        edits in proptest::collection::vec(edit(), 0..5),
        mutations in proptest::collection::vec(mutation(), 0..2),
    ) {
        let dir = plan_dir(PLANS[which]);
        let original = std::fs::read_to_string(dir.path().join("plan.toml")).unwrap();
        let file = dir.path().join("plan.toml");
        std::fs::write(&file, mutant(&original, &edits, &mutations)).unwrap();
        if let Err(e) = epu::plan::load(&file) {
            let message = format!("{e:#}");
            prop_assert!(message.contains("plan.toml"), "the error does not name the file: {}", message);
        }
    }
}

thread_local! {
    /// The bundled engines, compiled once per test thread.
    static ENGINES: (tempfile::TempDir, EngineHost, Vec<std::sync::Arc<epu::engine::LoadedEngine>>) = {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let state = epu::statedir::prepare(dir.path()).unwrap();
        let host = EngineHost::new(&state).unwrap();
        let engines = ["npreserving", "queuelen", "sensor"]
            .iter()
            .map(|e| host.add(&EngineHost::read_engine(e, Path::new("."), u64::MAX).unwrap()).unwrap())
            .collect();
        (dir, host, engines)
    };
}

fn scenarios() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for plugin in std::fs::read_dir(repo().join("plugins")).unwrap().flatten() {
        if let Ok(files) = std::fs::read_dir(plugin.path().join("scenarios")) {
            out.extend(files.flatten().map(|f| f.path()));
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: epu::proptest_cases(400),
        ..ProptestConfig::default()
    })]

    /// Any mutant of a bundled scenario loads or is refused naming the file; one that loads
    /// replays on the bundled engines to results or an error.
    #[test]
    fn a_mutated_scenario_loads_or_is_refused_and_replays_without_a_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 0..5),
        mutations in proptest::collection::vec(mutation(), 0..2),
    ) {
        let all = scenarios();
        prop_assume!(!all.is_empty());
        let original = std::fs::read_to_string(which.get(&all)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scenario.toml");
        std::fs::write(&file, mutant(&original, &edits, &mutations)).unwrap();
        match epu::engine_test::Scenario::load(&file) {
            Err(e) => {
                let message = format!("{e:#}");
                prop_assert!(message.contains("scenario.toml"), "the error does not name the file: {}", message);
            }
            Ok(scenario) => ENGINES.with(|(_, host, engines)| {
                for engine in engines {
                    let _ = epu::engine_test::run(host, engine, &scenario);
                }
            }),
        }
    }
}
