//! Every reference to the documentation resolves inside the repository:
//! each `docs/reference.md §N` (or `§N.M`) in code, tests, scripts and docs
//! names a numbered heading of docs/reference.md, and each relative markdown
//! link in README.md and docs/ names a file that exists.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Text files of the repository worth scanning (sources, tests, docs,
/// scripts), skipping build output and virtual environments.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(name.as_str(), "target" | ".venv" | ".git" | "corpus" | "artifacts" | "node_modules") {
                files(&p, out);
            }
        } else if [".rs", ".py", ".md", ".sh", ".toml", ".yaml"].iter().any(|x| name.ends_with(x)) {
            out.push(p);
        }
    }
}

fn reference_sections() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("docs/reference.md")).expect("docs/reference.md exists");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("### ").or_else(|| l.strip_prefix("## "))?;
            let num: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let num = num.trim_end_matches('.').to_string();
            (!num.is_empty()).then_some(num)
        })
        .collect()
}

#[test]
fn every_reference_section_cited_exists() {
    let sections = reference_sections();
    for n in ["1", "3", "5", "5.2", "5.4", "9", "11"] {
        assert!(sections.iter().any(|s| s == n), "docs/reference.md has no section {n}: {sections:?}");
    }
    let re = regex::Regex::new(r"docs/reference\.md §(\d+(?:\.\d+)?)").unwrap();
    let mut all = Vec::new();
    for d in ["src", "tests", "benches", "fuzz", "scripts", "bench", "docs", "examples", "docker"] {
        files(&root().join(d), &mut all);
    }
    all.push(root().join("README.md"));
    let mut cited = 0;
    let mut missing = Vec::new();
    for f in &all {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for c in re.captures_iter(&text) {
            cited += 1;
            if !sections.iter().any(|s| s == &c[1]) {
                missing.push(format!("{}: §{}", f.display(), &c[1]));
            }
        }
    }
    assert!(cited > 100, "only {cited} references found: is the scan looking in the right places?");
    assert!(missing.is_empty(), "references to sections docs/reference.md does not have: {missing:?}");
}

#[test]
fn relative_markdown_links_name_existing_files() {
    let mut docs = Vec::new();
    files(&root().join("docs"), &mut docs);
    docs.push(root().join("README.md"));
    let re = regex::Regex::new(r"\]\(([^)#:\s]+\.md)(?:#[^)]*)?\)").unwrap();
    let mut broken = Vec::new();
    for f in &docs {
        let text = std::fs::read_to_string(f).unwrap();
        for c in re.captures_iter(&text) {
            let target = f.parent().unwrap().join(&c[1]);
            if !target.exists() {
                broken.push(format!("{} -> {}", f.display(), &c[1]));
            }
        }
    }
    assert!(broken.is_empty(), "links to missing files: {broken:?}");
}
