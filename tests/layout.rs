//! The module map of docs/ARCHITECTURE.md, checked on the sources: which way dependencies point
//! between the workspace's crates and between the modules of `src/`, and which code may name RocksDB,
//! serde_json, anyhow or a transport. `check` is a pure function of file texts, so the rules are
//! themselves tested on small made-up trees below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The transports: they parse a wire format into the use cases and render the answers.
const TRANSPORTS: &[&str] = &["gateway", "http", "monitor"];

/// Operations code: it depends on the use cases or the log, never on a transport.
const OPS: &[&str] = &["audit", "backup", "transfer", "webhook", "metrics"];

/// Modules below the use cases: they name neither transports, the use cases nor ops code.
const BELOW_USE_CASES: &[&str] = &["presence", "config", "limits", "tls", "timefmt", "render", "blobs"];

/// Files (or folders, ending in `/`) of `src/` that may name serde_json: the REST families, JSON-RPC over
/// WebSocket, the shared message rendering, and the JSON formats of audit, export, backup, webhooks and
/// the monitor (and the command line, which prints them).
const JSON_ALLOWED: &[&str] = &[
    "src/http/",
    "src/gateway/jsonrpc.rs",
    "src/render.rs",
    "src/audit.rs",
    "src/transfer.rs",
    "src/backup.rs",
    "src/webhook.rs",
    "src/monitor.rs",
    "src/main.rs",
];

/// Files of `src/` that may use anyhow: start-up, the command line and its commands' modules.
const ANYHOW_ALLOWED: &[&str] = &["src/lib.rs", "src/main.rs", "src/backup.rs", "src/transfer.rs", "src/tls.rs", "src/webhook.rs"];

/// Workspace crates each crate may depend on (`rookery-*` dependencies in its Cargo.toml).
const CRATE_DEPS: &[(&str, &[&str])] = &[
    ("events", &[]),
    ("storage", &["rookery-events"]),
    ("actors", &["rookery-events", "rookery-storage"]),
    (".", &["rookery-events", "rookery-storage", "rookery-actors"]),
    ("bench", &["rookery", "rookery-events", "rookery-storage", "rookery-actors"]),
];

/// A source file: its path relative to the workspace root, and its text.
type Tree = BTreeMap<String, String>;

/// Every rule broken in `tree`, one sentence each.
fn check(tree: &Tree) -> Vec<String> {
    let mut broken = Vec::new();
    // The top-level module of src/ each file belongs to, and which top-level modules it names.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in tree {
        let code = without_comments(text);
        if path.ends_with(".rs") && !path.starts_with("storage/") && !path.starts_with("bench/") && names(&code, "rocksdb") {
            broken.push(format!("{path} names rocksdb: only storage/ may (StorageError hides the engine)"));
        }
        if path.ends_with("Cargo.toml") && !path.starts_with("storage/") && !path.starts_with("bench/") && path != "Cargo.toml" && code.contains("rocksdb") {
            broken.push(format!("{path} depends on rocksdb: only storage/ may"));
        }
        let Some(module) = src_module(path) else { continue };
        if names(&code, "serde_json") && !JSON_ALLOWED.iter().any(|a| path == a || (a.ends_with('/') && path.starts_with(a))) {
            broken.push(format!("{path} names serde_json: JSON belongs to the transports and the formats listed in tests/layout.rs"));
        }
        if names(&code, "anyhow") && !ANYHOW_ALLOWED.contains(&path.as_str()) {
            broken.push(format!("{path} names anyhow: library code returns typed errors"));
        }
        for used in crate_modules(&code) {
            if used != module {
                edges.entry(module.clone()).or_default().insert(used);
            }
        }
    }
    for (from, tos) in &edges {
        for to in tos {
            let rule = if TRANSPORTS.contains(&to.as_str()) && from != "lib" && from != "main" {
                Some("a transport is named only by lib.rs and main.rs, which wire them")
            } else if from == "usecase" && OPS.contains(&to.as_str()) {
                Some("the use cases never name ops code")
            } else if BELOW_USE_CASES.contains(&from.as_str()) && (to == "usecase" || OPS.contains(&to.as_str())) {
                Some("modules below the use cases name neither the use cases nor ops code")
            } else {
                None
            };
            if let Some(rule) = rule {
                broken.push(format!("src/{from} names crate::{to}: {rule}"));
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        broken.push(format!("modules of src/ depend on each other in a cycle: {}", cycle.join(" -> ")));
    }
    for (dir, allowed) in CRATE_DEPS {
        let manifest = if *dir == "." { "Cargo.toml".to_owned() } else { format!("{dir}/Cargo.toml") };
        let Some(text) = tree.get(&manifest) else { continue };
        for dep in workspace_deps(text) {
            if !allowed.contains(&dep.as_str()) {
                broken.push(format!("{manifest} depends on {dep}: crates depend one way, events <- storage <- actors <- rookery"));
            }
        }
    }
    broken
}

/// The top-level module of `src/` a file belongs to (`lib` and `main` for the crate roots).
fn src_module(path: &str) -> Option<String> {
    let rest = path.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

/// The top-level modules `code` names as `crate::x` (or, in a crate root, as `x::`).
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // `rookery::...` in main.rs names the library's modules the same way.
        let ident: String = code[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !ident.is_empty() {
            found.insert(ident);
        }
    }
    for (i, _) in code.match_indices("rookery::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let ident: String = code[i + 9..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !ident.is_empty() {
            found.insert(ident);
        }
    }
    // `use crate::{a, b}` groups.
    for (i, _) in code.match_indices("crate::{") {
        let group: String = code[i + 8..].chars().take_while(|c| *c != '}').collect();
        for part in group.split(',') {
            let ident: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !ident.is_empty() {
                found.insert(ident);
            }
        }
    }
    found
}

/// Whether `code` names crate `name` as a path (`name::` or `use name`).
fn names(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(i, _)| {
        let before = code[..i].chars().last();
        let after = &code[i + name.len()..];
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-') && (after.starts_with("::") || after.starts_with(';') || after.starts_with(" as"))
    })
}

/// `code` without `//` comments (doc comments included), so prose may mention anything.
fn without_comments(code: &str) -> String {
    code.lines()
        .map(|l| match l.find("//") {
            // Not inside a string literal that holds `//` (a URL): good enough for these checks.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `rookery-*` (and `rookery`) dependencies of a manifest, outside dev-dependencies.
fn workspace_deps(manifest: &str) -> Vec<String> {
    let value: toml::Value = manifest.parse().expect("a manifest is TOML");
    let Some(deps) = value.get("dependencies").and_then(|d| d.as_table()) else { return Vec::new() };
    deps.keys().filter(|k| *k == "rookery" || k.starts_with("rookery-")).cloned().collect()
}

/// A cycle among the module edges, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(node: &str, edges: &BTreeMap<String, BTreeSet<String>>, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    // The crate roots wire everything and are nobody's dependency.
    for node in edges.keys().filter(|n| *n != "lib" && *n != "main") {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// Every `.rs` file and crate manifest of the workspace, by path relative to its root.
fn workspace() -> Tree {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut tree = Tree::new();
    for dir in ["src", "events", "storage", "actors", "bench"] {
        collect(&root, &root.join(dir), &mut tree);
    }
    tree.insert("Cargo.toml".into(), std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml"));
    tree
}

fn collect(root: &Path, dir: &Path, tree: &mut Tree) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if name != "target" && name != "node_modules" && name != "fixtures" {
                collect(root, &path, tree);
            }
        } else if name.ends_with(".rs") || name == "Cargo.toml" {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            tree.insert(rel, std::fs::read_to_string(&path).expect("readable"));
        }
    }
}

#[test]
fn the_workspace_follows_the_module_map() {
    let tree = workspace();
    assert!(tree.contains_key("src/usecase/send.rs") && tree.contains_key("events/Cargo.toml"), "the sources were not found");
    let broken = check(&tree);
    assert!(broken.is_empty(), "docs/ARCHITECTURE.md's module map is broken:\n{}", broken.join("\n"));
}

fn tree(files: &[(&str, &str)]) -> Tree {
    files.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())).collect()
}

#[test]
fn a_transport_that_imports_another_is_refused() {
    let t = tree(&[("src/http/wukongim/user.rs", "use crate::gateway::packet::ReasonCode;\n"), ("src/gateway/session.rs", "use crate::usecase::Outgoing;\n")]);
    let broken = check(&t);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].contains("src/http names crate::gateway"), "{broken:?}");
}

#[test]
fn ops_code_may_not_name_a_transport_and_cycles_are_found() {
    let broken = check(&tree(&[("src/webhook.rs", "use crate::http::message_json;\n")]));
    assert!(broken.iter().any(|b| b.contains("src/webhook names crate::http")), "{broken:?}");
    let broken = check(&tree(&[("src/audit.rs", "use crate::backup::x;\n"), ("src/backup.rs", "fn f() { crate::audit::y(); }\n")]));
    assert!(broken.iter().any(|b| b.contains("cycle")), "{broken:?}");
}

#[test]
fn rocksdb_json_and_anyhow_stay_where_they_belong_and_comments_do_not_count() {
    let broken = check(&tree(&[
        ("actors/src/x.rs", "use rocksdb::DB;\n"),
        ("src/usecase/send.rs", "// serde_json::Value is not used here\nfn f() -> anyhow::Result<()> { Ok(()) }\n"),
        ("src/presence.rs", "fn f() { let _ = serde_json::json!({}); }\n"),
        ("src/http/x.rs", "use serde_json::Value;\n"),
    ]));
    assert_eq!(broken.len(), 3, "{broken:?}");
    assert!(broken[0].contains("actors/src/x.rs names rocksdb"), "{broken:?}");
    assert!(broken.iter().any(|b| b.contains("src/presence.rs names serde_json")), "{broken:?}");
    assert!(broken.iter().any(|b| b.contains("src/usecase/send.rs names anyhow")), "{broken:?}");
}

#[test]
fn crates_depend_one_way() {
    let broken = check(&tree(&[(
        "events/Cargo.toml",
        "[dependencies]\nrookery-actors = { path = \"../actors\" }\n[dev-dependencies]\nrookery-storage = { path = \"../storage\" }\n",
    )]));
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].contains("events/Cargo.toml depends on rookery-actors"), "{broken:?}");
}
