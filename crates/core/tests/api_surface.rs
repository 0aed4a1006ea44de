//! Two invariants of the crate's shape, checked on its source so they cannot quietly
//! come back: no hyper, hyper-util or toml type in the public (non-hidden) API, and no
//! cycle between the top-level modules' imports.
//!
//! Both read `src/` with a small scanner rather than rustdoc's JSON (which needs a
//! nightly toolchain): comments and string literals are blanked, then items are read
//! by their braces. What the scanner cannot see — a forbidden type reached only
//! through a macro it does not expand — it over-approximates: every macro body in a
//! public file is scanned whole.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Crates whose types must not appear in a public signature.
const FORBIDDEN: &[&str] = &["hyper", "hyper_util", "hyper_rustls", "toml"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`engine/health.rs` → `engine`); `None` for
/// `lib.rs`.
fn top_module(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src_dir()).expect("a file under src/");
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib").then_some(name)
}

/// The source with comments, string and char literals replaced by spaces (newlines
/// kept), so braces and paths can be read without being fooled by text.
fn blank(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let keep = |c: u8| if c == b'\n' { b'\n' } else { b' ' };
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend([b' ', b' ']);
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend([b' ', b' ']);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(keep(b[i]));
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // A raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.extend(std::iter::repeat_n(b' ', j + 1 - i));
            i = j + 1;
            while i < b.len() {
                if b[i] == b'"'
                    && b[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == b'#')
                        .count()
                        == hashes
                {
                    out.extend(std::iter::repeat_n(b' ', hashes + 1));
                    i += hashes + 1;
                    break;
                }
                out.push(keep(b[i]));
                i += 1;
            }
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    out.push(b' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(keep(b[i]));
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\''), not a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    out.extend(std::iter::repeat_n(b' ', e + 1 - i));
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8: only ASCII bytes are replaced")
}

/// Cuts what follows a `#[cfg(test)]` module (the tests at the bottom of a file).
fn without_tests(src: &str) -> &str {
    let mut at = 0;
    while let Some(p) = src[at..].find("#[cfg(test)]") {
        let start = at + p;
        let rest = src[start + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod ") || rest.starts_with("pub(crate) mod ") {
            return &src[..start];
        }
        at = start + 1;
    }
    src
}

/// One item read at a block level: its header (attributes, then the text up to its
/// body or `;`) and its body, if it has one in braces.
struct Item<'a> {
    header: &'a str,
    body: Option<&'a str>,
}

/// Splits a block's text into items by their braces and semicolons.
fn items(text: &str) -> Vec<Item<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut parens = 0i32;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' => parens += 1,
            b')' | b']' => parens -= 1,
            b';' if parens == 0 => {
                out.push(Item {
                    header: &text[start..i],
                    body: None,
                });
                start = i + 1;
            }
            b'{' if parens == 0 => {
                let open = i;
                i = open + closing(&text[open..], b'{', b'}');
                let header = &text[start..open];
                let body = &text[open + 1..i.min(b.len())];
                // `Foo { … }` in a `const`/`static` initialiser or a `let`: the item
                // goes on to its `;`.
                let (h, _) = strip_attrs(header);
                let h = h.strip_prefix("pub ").unwrap_or(h);
                let h = h.strip_prefix("pub(crate) ").unwrap_or(h);
                if ["const ", "static ", "let ", "use "]
                    .iter()
                    .any(|k| h.starts_with(k))
                {
                    i += 1;
                    continue;
                }
                out.push(Item {
                    header,
                    body: Some(body),
                });
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if !text[start..].trim().is_empty() {
        out.push(Item {
            header: &text[start..],
            body: None,
        });
    }
    out
}

/// The offset of the `close` that matches the first `open` of `s` (nesting counted),
/// or `s.len()` when it is never closed.
fn closing(s: &str, open: u8, close: u8) -> usize {
    let mut depth = 0usize;
    for (i, &c) in s.as_bytes().iter().enumerate() {
        if c == open {
            depth += 1;
        } else if c == close && depth > 0 {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
    }
    s.len()
}

/// The header without its attributes, and whether they hide the item from the API
/// (`#[doc(hidden)]`, `#[cfg(test)]`).
fn strip_attrs(header: &str) -> (&str, bool) {
    let mut h = header.trim_start();
    let mut hidden = false;
    while h.starts_with("#[") || h.starts_with("#![") {
        let end = (closing(h, b'[', b']') + 1).min(h.len());
        let attr: String = h[..end].split_whitespace().collect();
        if attr == "#[doc(hidden)]" || attr == "#[cfg(test)]" {
            hidden = true;
        }
        h = h[end..].trim_start();
    }
    (h, hidden)
}

/// Where a forbidden crate's name shows in `text`: `hyper::…`, `toml::…`, or a name
/// the file imported from one of them.
fn forbidden_in(text: &str, imported: &BTreeSet<String>) -> Option<String> {
    let words = text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'));
    for w in words {
        let first = w.split("::").next().unwrap_or_default();
        if (w.contains("::") && FORBIDDEN.contains(&first)) || imported.contains(w) {
            return Some(w.to_owned());
        }
    }
    None
}

/// Names a file brings in from the forbidden crates (`use hyper::body::Incoming;` →
/// `Incoming`).
fn forbidden_imports(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for item in items(text) {
        let (h, _) = strip_attrs(item.header);
        let h = h.strip_prefix("pub ").unwrap_or(h);
        let Some(path) = h.strip_prefix("use ") else {
            continue;
        };
        let path = path.trim().trim_start_matches("::");
        if !FORBIDDEN
            .iter()
            .any(|c| path.starts_with(&format!("{c}::")))
        {
            continue;
        }
        for part in path.split(['{', '}', ',']) {
            let part = part.trim();
            let name = match part.split_once(" as ") {
                Some((_, alias)) => alias.trim(),
                None => part.rsplit("::").next().unwrap_or_default().trim(),
            };
            if !name.is_empty() && name != "self" && name != "*" {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Public, non-hidden signatures in `text` that name a forbidden type.
fn public_leaks(
    text: &str,
    imported: &BTreeSet<String>,
    all_public: bool,
    only: Option<&BTreeSet<String>>,
    out: &mut Vec<String>,
) {
    for item in items(text) {
        let (h, hidden) = strip_attrs(item.header);
        if hidden || h.is_empty() {
            continue;
        }
        let public = all_public || h.starts_with("pub ");
        let decl = h.strip_prefix("pub ").unwrap_or(h);
        let kind_is = |k: &str| decl.split_whitespace().any(|w| w == k);
        let is_macro = decl.contains('!') && !decl.starts_with("use ");
        if let Some(only) = only {
            // Reached through named re-exports: only those items and their impls.
            if !is_macro && !item_name(decl).is_some_and(|n| only.contains(&n)) {
                continue;
            }
        }
        if decl.starts_with("impl") || decl.starts_with("unsafe impl") {
            // Trait impls show their header; inherent impls their `pub fn`s.
            if let Some(f) = forbidden_in(h, imported) {
                report(out, h, f);
            }
            let trait_impl = decl.contains(" for ");
            if let Some(body) = item.body {
                public_leaks(body, imported, trait_impl, None, out);
            }
            continue;
        }
        if is_macro {
            // A macro invocation: scan all it is given.
            let all = format!("{h} {}", item.body.unwrap_or_default());
            if let Some(f) = forbidden_in(&all, imported) {
                report(out, h, f);
            }
            continue;
        }
        if !public {
            continue;
        }
        if kind_is("struct") && item.body.is_none() && h.contains('(') {
            // A tuple struct: its header, and the fields marked `pub`.
            let (before, rest) = h.split_once('(').unwrap_or((h, ""));
            let (fields, after) = rest.rsplit_once(')').unwrap_or((rest, ""));
            for part in [before, after] {
                if let Some(f) = forbidden_in(part, imported) {
                    report(out, h, f);
                }
            }
            for field in split_top_level(fields) {
                let (f, hidden) = strip_attrs(field);
                if !hidden && f.starts_with("pub ") {
                    if let Some(found) = forbidden_in(f, imported) {
                        report(out, h, found);
                    }
                }
            }
            continue;
        }
        if let Some(f) = forbidden_in(h, imported) {
            report(out, h, f);
        }
        let Some(body) = item.body else {
            continue;
        };
        if kind_is("mod") {
            public_leaks(body, imported, false, None, out);
        } else if kind_is("trait") {
            public_leaks(body, imported, true, None, out);
        } else if kind_is("struct") || kind_is("enum") || kind_is("union") {
            let every_field = kind_is("enum");
            for field in split_top_level(body) {
                let (f, hidden) = strip_attrs(field);
                if hidden || !(every_field || f.starts_with("pub ")) {
                    continue;
                }
                if let Some(found) = forbidden_in(f, imported) {
                    report(out, f, found);
                }
            }
        }
    }
}

fn report(out: &mut Vec<String>, what: &str, found: String) {
    let what: String = what.split_whitespace().collect::<Vec<_>>().join(" ");
    out.push(format!(
        "`{found}` in `{}`",
        what.chars().take(120).collect::<String>()
    ));
}

/// Splits a struct or enum body at its top-level commas.
fn split_top_level(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match c {
            '(' | '[' | '{' | '<' => depth += 1,
            ')' | ']' | '}' | '>' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&body[start..]);
    out
}

/// The name an item declares (`pub struct Foo<T>` → `Foo`), or for an `impl` the
/// type it is for (`impl<T> Trait for Foo<T>` → `Foo`).
fn item_name(decl: &str) -> Option<String> {
    let ident = |s: &str| -> Option<String> {
        let n: String = s
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        (!n.is_empty()).then_some(n)
    };
    if let Some(rest) = decl
        .strip_prefix("impl")
        .or_else(|| decl.strip_prefix("unsafe impl"))
    {
        let mut rest = rest.trim_start();
        if rest.starts_with('<') {
            // Skip the impl's generics.
            rest = rest.get(closing(rest, b'<', b'>') + 1..).unwrap_or(rest);
        }
        let self_ty = rest.split_once(" for ").map_or(rest, |(_, t)| t);
        let self_ty = self_ty.trim_start().trim_start_matches('&').trim_start();
        let last = self_ty
            .split('<')
            .next()
            .unwrap_or_default()
            .rsplit("::")
            .next()?;
        return ident(last);
    }
    let mut words = decl.split_whitespace();
    while let Some(w) = words.next() {
        if [
            "struct", "enum", "union", "trait", "fn", "type", "const", "static", "mod",
        ]
        .contains(&w)
        {
            return ident(words.next()?);
        }
    }
    None
}

/// The file of module `name` declared in `file`.
fn child_file(file: &Path, name: &str) -> Option<PathBuf> {
    let dir = if file.ends_with("lib.rs") || file.ends_with("mod.rs") {
        file.parent()?.to_path_buf()
    } else {
        file.with_extension("")
    };
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// What a `pub use` path re-exports, from module file `file`: (file, names) pairs,
/// `None` for a glob.
fn resolve_use(file: &Path, path: &str, out: &mut Vec<(PathBuf, Option<String>)>) {
    let path = path.trim();
    if let Some(group) = path.strip_prefix('{') {
        let inner = group.strip_suffix('}').unwrap_or(group);
        for part in split_top_level(inner) {
            if !part.trim().is_empty() {
                resolve_use(file, part, out);
            }
        }
        return;
    }
    let (head, rest) = match path.split_once("::") {
        Some((h, r)) => (h.trim(), Some(r)),
        None => (path, None),
    };
    let head = head.split(" as ").next().unwrap_or(head).trim();
    match (head, rest) {
        ("*", _) => out.push((file.to_path_buf(), None)),
        ("crate", Some(r)) => resolve_use(&src_dir().join("lib.rs"), r, out),
        ("self", Some(r)) => resolve_use(file, r, out),
        (name, Some(r)) => {
            if let Some(child) = child_file(file, name) {
                resolve_use(&child, r, out);
            }
        }
        (name, None) => match child_file(file, name) {
            Some(child) => out.push((child, None)),
            None => out.push((file.to_path_buf(), Some(name.to_owned()))),
        },
    }
}

/// The files the public API is made of, each with the names visible in it (`None`:
/// all of it): from `lib.rs`, every `pub mod` that is not hidden, and every item a
/// visible `pub use` re-exports.
fn visible_files() -> BTreeMap<PathBuf, Option<BTreeSet<String>>> {
    let mut visible: BTreeMap<PathBuf, Option<BTreeSet<String>>> = BTreeMap::new();
    let mut queue: Vec<(PathBuf, Option<String>)> = vec![(src_dir().join("lib.rs"), None)];
    while let Some((file, name)) = queue.pop() {
        let known = visible.get(&file);
        let seen = match (&name, known) {
            (_, Some(None)) => true,
            (Some(n), Some(Some(names))) => names.contains(n),
            _ => false,
        };
        if seen {
            continue;
        }
        match &name {
            None => {
                visible.insert(file.clone(), None);
            }
            Some(n) => {
                visible
                    .entry(file.clone())
                    .or_insert_with(|| Some(BTreeSet::new()))
                    .as_mut()
                    .map(|names| names.insert(n.clone()));
            }
        }
        let src = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let text = without_tests(&blank(&src)).to_owned();
        for item in items(&text) {
            let (h, hidden) = strip_attrs(item.header);
            let Some(decl) = h.strip_prefix("pub ").filter(|_| !hidden) else {
                continue;
            };
            if let Some(m) = decl.strip_prefix("mod ") {
                let m = m.trim();
                if name.as_deref().is_none_or(|n| n == m) {
                    if let Some(child) = child_file(&file, m) {
                        queue.push((child, None));
                    }
                }
            } else if let Some(path) = decl.strip_prefix("use ") {
                let mut found = Vec::new();
                resolve_use(&file, path, &mut found);
                for (f, n) in found {
                    // In a file seen through one name, only that name's re-export counts.
                    let wanted = match (&name, &n) {
                        (None, _) => true,
                        (Some(want), Some(got)) => {
                            path.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                                .any(|w| w == want)
                                && (got == want || path.contains(&format!("{got} as {want}")))
                        }
                        (Some(_), None) => false,
                    };
                    if wanted {
                        queue.push((f, n));
                    }
                }
            }
        }
    }
    visible
}

/// Every file's blanked source without its tests, by top-level module.
fn sources() -> BTreeMap<String, Vec<(PathBuf, String)>> {
    let mut paths = Vec::new();
    rust_files(&src_dir(), &mut paths);
    let mut by_module: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    for path in paths {
        let Some(module) = top_module(&path) else {
            continue;
        };
        let src = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = without_tests(&blank(&src)).to_owned();
        by_module.entry(module).or_default().push((path, text));
    }
    by_module
}

#[test]
fn no_hyper_or_toml_type_in_the_public_api() {
    let visible = visible_files();
    let rel = |p: &Path| p.strip_prefix(src_dir()).unwrap_or(p).display().to_string();
    for expected in [
        "chat/mod.rs",
        "config/mod.rs",
        "provider.rs",
        "gateway.rs",
        "call.rs",
    ] {
        assert!(
            visible.keys().any(|p| rel(p) == expected),
            "the scan should see `{expected}` as public; it saw {:?}",
            visible.keys().map(|p| rel(p)).collect::<Vec<_>>()
        );
    }
    let mut leaks = Vec::new();
    for (path, only) in &visible {
        let src = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = without_tests(&blank(&src)).to_owned();
        let imported = forbidden_imports(&text);
        let mut found = Vec::new();
        public_leaks(&text, &imported, false, only.as_ref(), &mut found);
        leaks.extend(found.into_iter().map(|f| format!("{}: {f}", rel(path))));
    }
    assert!(
        leaks.is_empty(),
        "expected no hyper/hyper_util/toml type in a public, non-hidden signature; found:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn the_scanner_sees_a_leak_and_ignores_hidden_items() {
    let src = blank(
        "use hyper::body::Incoming;\n\
         pub struct A { pub body: Incoming, b: toml::Table }\n\
         #[doc(hidden)] pub fn hidden(x: toml::Value) {}\n\
         pub(crate) fn internal(x: toml::Value) {}\n\
         impl A { pub fn leak(&self) -> toml::Table { todo() } fn private(t: toml::Table) {} }\n\
         pub enum E { X(hyper::Uri), #[doc(hidden)] Y(toml::Value) }\n\
         pub fn ok(s: &str) -> String { let t: toml::Table = s.parse(); String::new() }\n",
    );
    let imported = forbidden_imports(&src);
    let mut found = Vec::new();
    public_leaks(&src, &imported, false, None, &mut found);
    let found = found.join("\n");
    assert_eq!(
        found.lines().count(),
        3,
        "expected three leaks, got:\n{found}"
    );
    for want in ["Incoming", "fn leak", "hyper::Uri"] {
        assert!(
            found.contains(want),
            "expected a leak naming {want}; got:\n{found}"
        );
    }
}

/// `crate::x` / `crate::{x, y::z}` / `super::x` (from a top-level file) references.
fn references(text: &str, depth: usize, root_items: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |name: &str| {
        let name = name.trim();
        if let Some(m) = root_items.get(name) {
            out.insert(m.clone());
        } else if !name.is_empty() {
            out.insert(name.to_owned());
        }
    };
    let prefixes: Vec<String> = std::iter::once("crate::".to_owned())
        .chain((depth == 0).then(|| "super::".to_owned()))
        .chain((depth == 1).then(|| "super::super::".to_owned()))
        .collect();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for prefix in &prefixes {
        let mut at = 0;
        while let Some(p) = text[at..].find(prefix.as_str()) {
            let start = at + p;
            at = start + prefix.len();
            let before = text[..start].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &text[at..];
            if rest.starts_with('{') {
                // The first segment of each path in the group, at the group's top level.
                let inner = &rest[1..closing(rest, b'{', b'}')];
                let mut level = 0;
                let mut seg_start = true;
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => level += 1,
                        '}' => level -= 1,
                        ',' if level == 0 => seg_start = true,
                        c if seg_start && level == 0 && !c.is_whitespace() => {
                            add(&ident(&inner[i..]));
                            seg_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                add(&ident(rest));
            }
        }
    }
    out
}

#[test]
fn top_level_modules_do_not_import_each_other_in_a_cycle() {
    let files = sources();
    // Root items (`crate::Call`) are charged to the module they are re-exported from.
    let lib = blank(&fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs"));
    let mut root_items = BTreeMap::new();
    for item in items(&lib) {
        let (h, _) = strip_attrs(item.header);
        let Some(path) = h.strip_prefix("pub use ") else {
            continue;
        };
        let module = path
            .split("::")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let names = path.split_once("::").map(|(_, n)| n).unwrap_or_default();
        for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !name.is_empty() {
                root_items.insert(name.to_owned(), module.clone());
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut witness: BTreeMap<(String, String), String> = BTreeMap::new();
    for (module, module_files) in &files {
        for (path, text) in module_files {
            let rel = path.strip_prefix(src_dir()).unwrap_or(path);
            let mut depth = rel.components().count() - 1;
            if rel.ends_with("mod.rs") {
                depth -= 1;
            }
            for target in references(text, depth, &root_items) {
                if &target != module && files.contains_key(&target) {
                    witness
                        .entry((module.clone(), target.clone()))
                        .or_insert_with(|| rel.display().to_string());
                    graph.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }
    let cycles = strongly_connected(&graph);
    let describe = |scc: &BTreeSet<String>| {
        let mut edges = Vec::new();
        for a in scc {
            for b in graph
                .get(a)
                .into_iter()
                .flatten()
                .filter(|b| scc.contains(*b))
            {
                edges.push(format!("{a} -> {b} ({})", witness[&(a.clone(), b.clone())]));
            }
        }
        edges.join("\n  ")
    };
    assert!(
        cycles.is_empty(),
        "expected no import cycle between top-level modules; found:\n  {}",
        cycles
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join("\n\n  ")
    );
}

/// Tarjan's strongly connected components with more than one module.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_cycle_check_sees_imports_and_cycles() {
    let root_items = BTreeMap::from([("Call".to_owned(), "call".to_owned())]);
    let text = blank(
        "use crate::{chat::Message, engine::{Health, Policy}};\n\
         use crate::Call;\n\
         // use crate::commented;\n\
         fn f() -> super::json::Value { crate::router::resolve() }\n",
    );
    let refs = references(&text, 0, &root_items);
    let want: BTreeSet<String> = ["chat", "engine", "call", "json", "router"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(refs, want);
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        (
            "c".to_owned(),
            BTreeSet::from(["a".to_owned(), "d".to_owned()]),
        ),
    ]);
    let sccs = strongly_connected(&graph);
    assert_eq!(sccs.len(), 1, "{sccs:?}");
    assert_eq!(
        sccs[0],
        BTreeSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()])
    );
}
