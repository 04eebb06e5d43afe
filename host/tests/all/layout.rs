//! The layout of `host/src`: every import points down. The top-level modules that `lib.rs`
//! declares, linked by the `crate::` paths of their (non-test) code, form no cycle.

use crate::kit;

use kit::repo;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Per top-level module: the modules its code names, each with a file that names it.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn read_imports(dir: &Path, root: &Path, graph: &mut Graph) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_imports(&path, root, graph);
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if !rel.ends_with(".rs") || rel.ends_with("/tests.rs") || top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // A file's unit tests may reach anywhere: they sit at its end.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(name)
                    .or_insert(rel.clone());
            }
        }
    }
}

/// A cycle of the graph, if it has one, as the modules along it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == node) {
            return Some(path[start..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn imports_between_top_level_modules_form_no_cycle() {
    let root = repo().join("host/src");
    let mut graph = Graph::new();
    read_imports(&root, &root, &mut graph);
    assert!(graph.len() > 10, "read too little: {graph:?}");
    if let Some(c) = cycle(&graph) {
        let edges: Vec<String> = c
            .iter()
            .zip(c.iter().cycle().skip(1))
            .map(|(a, b)| format!("{a} -> {b} ({})", graph[a][b]))
            .collect();
        panic!("an import cycle: {}", edges.join(", "));
    }
}

/// The modules in the order `lib.rs`'s layout lists them (the first link of each item).
fn listed_order(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn each_module_imports_only_modules_listed_before_it_in_lib_rs() {
    let root = repo().join("host/src");
    let mut graph = Graph::new();
    read_imports(&root, &root, &mut graph);
    let order = listed_order(&std::fs::read_to_string(root.join("lib.rs")).unwrap());
    let place = |m: &str| order.iter().position(|o| o == m);
    let mut wrong = Vec::new();
    for (module, imports) in &graph {
        let Some(at) = place(module) else {
            wrong.push(format!("{module} is not in lib.rs's layout"));
            continue;
        };
        for (import, file) in imports {
            // The crate root's own items (`crate::proptest_cases`) are not modules.
            if let Some(to) = place(import).filter(|to| *to > at) {
                wrong.push(format!(
                    "{module} imports {} ({file}), listed after it",
                    order[to]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_source_file_is_over_500_lines() {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let n = std::fs::read_to_string(&path).unwrap().lines().count();
                if n > 500 {
                    out.push(format!("{}: {n} lines", path.display()));
                }
            }
        }
    }
    let mut long = Vec::new();
    walk(&repo().join("host/src"), &mut long);
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), "f.rs".into());
    }
    let found = cycle(&g).expect("a -> b -> c -> a");
    assert_eq!(found.len(), 3);
    g.get_mut("c").unwrap().remove("a");
    assert_eq!(cycle(&g), None);
}
