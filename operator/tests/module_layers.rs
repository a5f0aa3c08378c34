//! The operator's modules form layers (docs/architecture.md, "Inside the operator"): no import
//! cycle among them, so each can be read, tested and changed from the bottom up. This reads the
//! `use crate::...` and `super::...` paths of every source file and fails on a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file is (`plan/capacity`, `observe`; `mod.rs` is its directory).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let name = relative.to_string_lossy().replace('\\', "/");
    name.strip_suffix("/mod").unwrap_or(&name).to_string()
}

/// The modules `text` (of module `module`) names through `crate::a::b` or `super::a`, resolved to
/// modules that exist; comments are skipped (a doc link is not a dependency).
fn dependencies(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = module.rsplit_once('/').map_or("", |(p, _)| p);
    let mut deps = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (prefix, base) in [("crate::", ""), ("super::", parent)] {
            for (i, _) in line.match_indices(prefix) {
                let path: Vec<&str> = line[i + prefix.len()..]
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .collect();
                // The longest prefix of the path that is a module.
                for n in (1..=path.len().min(2)).rev() {
                    let mut candidate = path[..n].join("/");
                    if !base.is_empty() {
                        candidate = format!("{base}/{candidate}");
                    }
                    if modules.contains(&candidate) && candidate != module {
                        deps.insert(candidate);
                        break;
                    }
                }
            }
        }
    }
    deps
}

#[test]
fn no_two_operator_modules_import_each_other() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // A module's own tests (`#[cfg(test)] mod tests { use super::*; }`) are inside it.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        graph.insert(module.clone(), dependencies(&module, code, &modules));
    }
    // A parent module (`plan`) re-exporting its children is not a layer of its own.
    for (module, deps) in graph.iter_mut() {
        deps.retain(|d| {
            !module.starts_with(&format!("{d}/")) && !d.starts_with(&format!("{module}/"))
        });
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let cycle = visit(module, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "import cycle: {}",
            cycle.unwrap_or_default().join(" -> ")
        );
    }
    assert!(
        graph.len() > 30,
        "found the operator's modules: {}",
        graph.len()
    );
}
