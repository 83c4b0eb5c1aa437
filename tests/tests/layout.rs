//! The shape of the code, checked (ARCHITECTURE.md, "Invariants"):
//!
//! - no import cycle between the modules (files) of a crate: each file's
//!   `use` declarations and `crate::`/`super::`/`self::` paths are resolved
//!   to the file of the module they name, following `pub use` re-exports,
//!   and the graph of files must have no cycle;
//! - no source file over [`MAX_LINES`] lines outside its `#[cfg(test)]`
//!   items.
//!
//! Test-only code (`#[cfg(test)]` items and files) is left out of both.
//! The checker reads the source with `syn`; it is tested on a small tree
//! with a cycle of its own (`finds_a_cycle_through_a_re_export`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

/// Longest a source file may be, counting lines outside test-only items.
const MAX_LINES: usize = 700;

/// The library crates checked, by source folder.
const CRATES: [&str; 4] = ["protocol/src", "quic/src", "relay/src", "client/src"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One module: where it is, its children and the names it imports.
#[derive(Debug, Default)]
struct Module {
    /// The file it lives in (inline modules live in their parent's file).
    file: PathBuf,
    /// Child modules by name.
    children: BTreeSet<String>,
    /// `pub use` items: name bound -> path as written ("*" for a glob).
    reexports: Vec<(String, Vec<String>)>,
    /// Every `use` item: name bound -> path as written.
    bindings: Vec<(String, Vec<String>)>,
}

/// A crate's modules by absolute path (`[]` is the crate root), the paths
/// each module's non-test code names, and each file's size.
#[derive(Debug, Default)]
struct Crate {
    modules: BTreeMap<Vec<String>, Module>,
    /// (file, module, path as written there).
    refs: Vec<(PathBuf, Vec<String>, Vec<String>)>,
    /// Lines outside test-only items, per file.
    lines: BTreeMap<PathBuf, usize>,
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        if !a.path().is_ident("cfg") {
            return false;
        }
        let Ok(meta) = a.parse_args::<syn::Meta>() else {
            return false;
        };
        match &meta {
            syn::Meta::Path(p) => p.is_ident("test") || p.is_ident("doctest"),
            syn::Meta::List(l) if l.path.is_ident("any") => {
                let text = l.tokens.to_string();
                text.split(',').any(|t| t.trim() == "test")
            }
            _ => false,
        }
    })
}

fn item_is_test_only(item: &syn::Item) -> bool {
    match item {
        syn::Item::Mod(x) => is_test_only(&x.attrs),
        syn::Item::Fn(x) => is_test_only(&x.attrs),
        syn::Item::Use(x) => is_test_only(&x.attrs),
        syn::Item::Impl(x) => is_test_only(&x.attrs),
        syn::Item::Const(x) => is_test_only(&x.attrs),
        syn::Item::Static(x) => is_test_only(&x.attrs),
        syn::Item::Struct(x) => is_test_only(&x.attrs),
        syn::Item::Enum(x) => is_test_only(&x.attrs),
        syn::Item::Trait(x) => is_test_only(&x.attrs),
        syn::Item::Type(x) => is_test_only(&x.attrs),
        syn::Item::Macro(x) => is_test_only(&x.attrs),
        _ => false,
    }
}

/// Every path a `use` tree names, with the name it binds.
fn expand_use(tree: &syn::UseTree, prefix: &[String], out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut next = prefix.to_vec();
            next.push(p.ident.to_string());
            expand_use(&p.tree, &next, out);
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                let bound = prefix.last().cloned().unwrap_or_default();
                out.push((bound, prefix.to_vec()));
            } else {
                let mut path = prefix.to_vec();
                path.push(name.clone());
                out.push((name, path));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.to_vec();
            let name = r.ident.to_string();
            if name != "self" {
                path.push(name);
            }
            out.push((r.rename.to_string(), path));
        }
        syn::UseTree::Glob(_) => out.push(("*".to_owned(), prefix.to_vec())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                expand_use(t, prefix, out);
            }
        }
    }
}

/// Collects the multi-segment paths non-test code names (single names
/// come from `use` items, which are read apart). Paths inside macro
/// invocations are not seen.
#[derive(Default)]
struct Paths {
    found: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() && p.segments.len() > 1 {
            self.found
                .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item(&mut self, i: &'ast syn::Item) {
        if !item_is_test_only(i) {
            syn::visit::visit_item(self, i);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

impl Crate {
    fn read(src: &Path) -> Self {
        let mut krate = Crate::default();
        krate.read_file(&src.join("lib.rs"), &[], src);
        krate
    }

    /// Reads the module in `file` (absolute module path `here`, children
    /// under `child_dir`) and its children, recursively.
    fn read_file(&mut self, file: &Path, here: &[String], child_dir: &Path) {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let test_lines: usize = parsed
            .items
            .iter()
            .filter(|i| item_is_test_only(i))
            .map(|i| i.span().end().line + 1 - i.span().start().line)
            .sum();
        self.lines.insert(
            file.to_owned(),
            text.lines().count().saturating_sub(test_lines),
        );
        self.read_items(file, here, child_dir, &parsed.items);
    }

    fn read_items(&mut self, file: &Path, here: &[String], child_dir: &Path, items: &[syn::Item]) {
        self.modules.entry(here.to_vec()).or_default().file = file.to_owned();
        let mut paths = Paths::default();
        for item in items.iter().filter(|i| !item_is_test_only(i)) {
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    let child = [here, std::slice::from_ref(&name)].concat();
                    let module = self.modules.entry(here.to_vec()).or_default();
                    module.children.insert(name.clone());
                    let dir = child_dir.join(&name);
                    match &m.content {
                        Some((_, inner)) => self.read_items(file, &child, &dir, inner),
                        None => {
                            let flat = child_dir.join(format!("{name}.rs"));
                            let path = if flat.exists() {
                                flat
                            } else {
                                dir.join("mod.rs")
                            };
                            self.read_file(&path, &child, &dir);
                        }
                    }
                }
                syn::Item::Use(u) => {
                    let mut expanded = Vec::new();
                    expand_use(&u.tree, &[], &mut expanded);
                    let public = !matches!(u.vis, syn::Visibility::Inherited);
                    let module = self.modules.entry(here.to_vec()).or_default();
                    for (name, path) in expanded {
                        if public {
                            module.reexports.push((name.clone(), path.clone()));
                        }
                        if name != "*" {
                            module.bindings.push((name, path.clone()));
                        }
                        self.refs.push((file.to_owned(), here.to_vec(), path));
                    }
                }
                other => paths.visit_item(other),
            }
        }
        for p in paths.found {
            self.refs.push((file.to_owned(), here.to_vec(), p));
        }
    }

    /// The absolute module path of `written` as written in module `here`,
    /// or `None` if it leads outside the crate (std, another crate, a type
    /// of the same module).
    fn absolute(&self, here: &[String], written: &[String], depth: usize) -> Option<Vec<String>> {
        let (first, rest) = written.split_first()?;
        if depth > 8 {
            return None;
        }
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" => Some([here, rest].concat()),
            "super" => {
                let mut base = here.to_vec();
                let mut rest = written;
                while let Some(("super", tail)) = rest.split_first().map(|(f, t)| (f.as_str(), t)) {
                    base.pop()?;
                    rest = tail;
                }
                Some([base.as_slice(), rest].concat())
            }
            _ => {
                let module = self.modules.get(here)?;
                if module.children.contains(first) {
                    return Some([here, written].concat());
                }
                let (_, bound) = module.bindings.iter().find(|(n, _)| n == first)?;
                let base = self.absolute(here, bound, depth + 1)?;
                Some([base.as_slice(), rest].concat())
            }
        }
    }

    /// The file an absolute path leads to, following `pub use`.
    fn target(&self, path: &[String], depth: usize) -> Option<PathBuf> {
        if depth > 8 {
            return None;
        }
        let mut module: Vec<String> = Vec::new();
        let mut rest = path;
        while let Some((first, tail)) = rest.split_first() {
            let next = [module.as_slice(), std::slice::from_ref(first)].concat();
            if !self.modules.contains_key(&next) {
                break;
            }
            module = next;
            rest = tail;
        }
        if let Some(name) = rest.first()
            && let Some(found) = self.reexport(&module, name, depth)
        {
            return Some(found);
        }
        self.modules.get(&module).map(|m| m.file.clone())
    }

    fn reexport(&self, module: &[String], name: &str, depth: usize) -> Option<PathBuf> {
        let m = self.modules.get(module)?;
        let through = |written: &[String]| {
            let absolute = self.absolute(module, written, 0)?;
            self.target(&absolute, depth + 1)
        };
        if let Some((_, written)) = m.reexports.iter().find(|(n, _)| n == name) {
            return through(written);
        }
        m.reexports
            .iter()
            .filter(|(n, _)| n == "*")
            .find_map(|(_, written)| through(&[written.as_slice(), &[name.to_owned()]].concat()))
    }

    /// File -> files it imports from, with the paths that tie them.
    fn graph(&self) -> BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>> {
        let mut graph: BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>> = BTreeMap::new();
        for (file, here, written) in &self.refs {
            let edges = graph.entry(file.clone()).or_default();
            let Some(absolute) = self.absolute(here, written, 0) else {
                continue;
            };
            if let Some(target) = self.target(&absolute, 0)
                && &target != file
            {
                edges.entry(target).or_default().insert(absolute.join("::"));
            }
        }
        graph
    }
}

/// The strongly connected components with more than one file (Tarjan).
fn cycles(graph: &BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>>) -> Vec<Vec<PathBuf>> {
    struct State<'g> {
        graph: &'g BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>>,
        index: BTreeMap<&'g PathBuf, usize>,
        low: BTreeMap<&'g PathBuf, usize>,
        stack: Vec<&'g PathBuf>,
        on_stack: BTreeSet<&'g PathBuf>,
        next: usize,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g PathBuf) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(edges) = s.graph.get(v) {
            for w in edges.keys() {
                let Some((w, _)) = s.graph.get_key_value(w) else {
                    continue;
                };
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// A readable account of each cycle: its files and what ties them.
fn describe(
    graph: &BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>>,
    cycle: &[PathBuf],
    base: &Path,
) -> String {
    let name = |p: &Path| p.strip_prefix(base).unwrap_or(p).display().to_string();
    let mut out = format!(
        "cycle: {}\n",
        cycle.iter().map(|p| name(p)).collect::<Vec<_>>().join(", ")
    );
    for from in cycle {
        for (to, via) in &graph[from] {
            if cycle.contains(to) {
                let via: Vec<_> = via.iter().cloned().collect();
                out += &format!("  {} -> {}: {}\n", name(from), name(to), via.join(", "));
            }
        }
    }
    out
}

#[test]
fn no_module_import_cycles() {
    let base = root().canonicalize().unwrap();
    let mut report = String::new();
    for src in CRATES {
        let krate = Crate::read(&base.join(src));
        let graph = krate.graph();
        for cycle in cycles(&graph) {
            report += &describe(&graph, &cycle, &base);
        }
    }
    assert!(
        report.is_empty(),
        "imports must point downward (ARCHITECTURE.md):\n{report}"
    );
}

#[test]
fn no_source_file_over_the_line_limit() {
    let base = root().canonicalize().unwrap();
    let mut over = Vec::new();
    for src in CRATES {
        let krate = Crate::read(&base.join(src));
        for (file, lines) in &krate.lines {
            if *lines > MAX_LINES {
                over.push(format!(
                    "{}: {lines} lines outside tests",
                    file.strip_prefix(&base).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(
        over.is_empty(),
        "files over {MAX_LINES} lines (split them by job):\n{}",
        over.join("\n")
    );
}

#[test]
fn finds_a_cycle_through_a_re_export() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |name: &str, text: &str| {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "pub mod a;\npub mod b;\nmod c;\n#[cfg(test)]\nmod t;\n",
    );
    // a -> b through b's re-export of b::inner::Thing; b::inner -> a.
    write("a.rs", "use crate::b::Thing;\npub struct A(Thing);\n");
    write("b/mod.rs", "mod inner;\npub use self::inner::Thing;\n");
    write(
        "b/inner.rs",
        "pub struct Thing;\nfn f() { let _ = super::super::a::A; }\n",
    );
    // c only imports, and the test-only module imports c: no cycle.
    write(
        "c.rs",
        "use crate::a::A;\n#[cfg(test)]\nmod tests { use crate::c; }\n",
    );
    write("t.rs", "use crate::c;\n");
    let krate = Crate::read(src);
    let found = cycles(&krate.graph());
    let names: Vec<Vec<String>> = found
        .iter()
        .map(|c| {
            c.iter()
                .map(|p| p.strip_prefix(src).unwrap().display().to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        names,
        vec![vec!["a.rs".to_owned(), "b/inner.rs".to_owned()]]
    );
    // The test-only lines of c.rs are not counted.
    assert_eq!(krate.lines[&src.join("c.rs")], 1);
    assert!(!krate.lines.contains_key(&src.join("t.rs")));
}

/// Files of the repository as a fresh clone has them: what git tracks (and
/// what it would add: untracked files it does not ignore), or, where git
/// cannot tell, every file but build output and version-control data.
fn repository_files(base: &Path) -> Vec<PathBuf> {
    let listed = std::process::Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(base)
        .output();
    if let Ok(out) = listed
        && out.status.success()
    {
        return out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| base.join(String::from_utf8_lossy(p).as_ref()))
            .filter(|p| p.is_file())
            .collect();
    }
    let mut out = Vec::new();
    let mut dirs = vec![base.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == ".git" {
                continue;
            }
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "corpus" | "artifacts") {
                    dirs.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn nothing_refers_to_a_file_outside_the_repository() {
    let base = root().canonicalize().unwrap();
    // Spelled in parts so this file does not match itself.
    let outside = [
        ["../", "shared"].concat(),
        ["CRATES", ".md"].concat(),
        ["DESIGN", ".md"].concat(),
        ["STYLE", ".md"].concat(),
        ["/work", "/"].concat(),
    ];
    let mut found = Vec::new();
    for file in repository_files(&base) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // binary
        };
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o.as_str())) {
                let shown = file.strip_prefix(&base).unwrap_or(&file).display();
                found.push(format!("{shown}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the repository must stand alone:\n{}",
        found.join("\n")
    );
}

/// Paths written in each non-test file of the crates, as written (`use`
/// items and paths in code), whose start matches one of `forbidden`, for
/// the files `applies` picks (paths relative to the repository root).
fn forbidden_uses(applies: impl Fn(&str) -> bool, forbidden: &[&[&str]]) -> Vec<String> {
    let base = root().canonicalize().unwrap();
    let mut found = Vec::new();
    for src in CRATES {
        let krate = Crate::read(&base.join(src));
        for (file, _, written) in &krate.refs {
            let shown = file
                .strip_prefix(&base)
                .unwrap_or(file)
                .display()
                .to_string();
            if !applies(&shown) {
                continue;
            }
            // `std::time::Instant::now` and `Instant::now` alike: match
            // each pattern at any position of the path.
            let hit = forbidden.iter().any(|pattern| {
                written
                    .windows(pattern.len())
                    .enumerate()
                    .any(|(at, w)| w == *pattern && (at == 0 || pattern.len() > 1))
            });
            if hit {
                found.push(format!("{shown}: {}", written.join("::")));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

const CLOCK_READS: [&[&str]; 3] = [&["Instant", "now"], &["SystemTime", "now"], &["Utc", "now"]];

#[test]
fn sans_io_code_does_no_io() {
    // The protocol crate: no network, files, runtime, clock or randomness
    // of its own.
    let mut found = forbidden_uses(
        |f| f.starts_with("protocol/src/"),
        &[
            &["tokio"],
            &["quinn"],
            &["std", "fs"],
            &["std", "net", "UdpSocket"],
            &["std", "net", "TcpStream"],
            &["std", "net", "TcpListener"],
            &["std", "thread"],
            &["OsRng"],
            &["rngs", "OsRng"],
            &["rand", "rng"],
            &["getrandom"],
            CLOCK_READS[0],
            CLOCK_READS[1],
        ],
    );
    // The relay's request logic and policy, the client's domain and saved
    // model: no runtime, no QUIC.
    found.extend(forbidden_uses(
        |f| {
            [
                "relay/src/logic/",
                "relay/src/policy/",
                "client/src/domain/",
                "client/src/profile/",
            ]
            .iter()
            .any(|p| f.starts_with(p))
        },
        &[&["tokio"], &["quinn"], &["enlace_quic"]],
    ));
    assert!(
        found.is_empty(),
        "sans-IO code must not do I/O (ARCHITECTURE.md, Invariants):\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_clock_reads_time() {
    let found = forbidden_uses(
        |f| f != "relay/src/clock.rs" && f != "client/src/time.rs",
        &CLOCK_READS,
    );
    assert!(
        found.is_empty(),
        "only relay/src/clock.rs and client/src/time.rs read the clock:\n{}",
        found.join("\n")
    );
}
