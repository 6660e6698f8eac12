//! The library's top-level modules form a layered graph, with no cycle: each module names only
//! modules below it (docs/architecture.md, "Layers"). This test reads src/ and takes an edge
//! A → B wherever code in module A names `crate::B` (in a `use` line or a path), then asserts
//! that the graph has no cycle and prints the layers it found. Comments are skipped; `super::`
//! stays inside a module and is not an edge. Run alone: `cargo test --test module_graph`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under src/ belongs to (`src/net/conn.rs` → `net`), or None for
/// the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The top-level modules named as `crate::NAME` in `code` (comment lines skipped), including
/// inside braces: `use crate::{a, b::c}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    out.extend(ident(item.trim()));
                }
            } else {
                out.extend(ident(rest));
            }
        }
    }
    out
}

fn ident(s: &str) -> Option<String> {
    let name: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g = Graph::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let code = std::fs::read_to_string(&file).unwrap();
        let deps = g.entry(module.clone()).or_default();
        for dep in named_modules(&code) {
            if dep != module {
                deps.insert(dep);
            }
        }
    }
    g
}

/// A cycle in `g`, if there is one (depth-first search).
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for dep in g.get(node).into_iter().flatten() {
            if let Some(c) = visit(g, dep, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

/// Layer numbers: 0 for modules that name no other, then one above the highest they name.
fn layers(g: &Graph) -> BTreeMap<usize, Vec<String>> {
    fn depth(g: &Graph, n: &str, memo: &mut BTreeMap<String, usize>) -> usize {
        if let Some(&d) = memo.get(n) {
            return d;
        }
        let d = g
            .get(n)
            .into_iter()
            .flatten()
            .map(|dep| depth(g, dep, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(n.to_string(), d);
        d
    }
    let mut memo = BTreeMap::new();
    let mut out: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for n in g.keys() {
        out.entry(depth(g, n, &mut memo))
            .or_default()
            .push(n.clone());
    }
    out
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    assert!(
        g.contains_key("storage") && g.contains_key("kafka"),
        "{g:?}"
    );
    if let Some(cycle) = find_cycle(&g) {
        panic!("module cycle: {}\nedges: {g:#?}", cycle.join(" → "));
    }
    for (layer, modules) in layers(&g) {
        println!("layer {layer}: {}", modules.join(", "));
    }
}

#[test]
fn the_reader_finds_edges_and_cycles() {
    let code = "use crate::{a, b::c};\n// crate::d\nlet x = crate::e::f(); // crate::g";
    let names: Vec<String> = named_modules(code).into_iter().collect();
    assert_eq!(names, ["a", "b", "e"]);
    let mut g = Graph::new();
    g.entry("x".into()).or_default().insert("y".into());
    g.entry("y".into()).or_default().insert("z".into());
    g.entry("z".into()).or_default();
    assert_eq!(find_cycle(&g), None);
    g.entry("z".into()).or_default().insert("x".into());
    assert_eq!(find_cycle(&g).unwrap().len(), 4);
}
