//! Finding `libonnxruntime` without configuration.
//!
//! Order: `KEEL_ORT_LIB` (a file), `ORT_DYLIB_PATH` (the variable the `ort` crate documents),
//! the `onnxruntime` package of an active or nearby Python virtual environment (`VIRTUAL_ENV`,
//! then `.venv` in the current directory, the executable's directory and their ancestors),
//! the package as `python3` sees it, and last the system library folders.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the library file explicitly.
pub const ENV_ORT_LIB: &str = "KEEL_ORT_LIB";
/// The variable the `ort` crate itself documents; honoured as a second choice.
pub const ENV_ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/lib",
    "/usr/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/opt/onnxruntime/lib",
];

/// The outcome of a search: the library found, or every place that was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    Found(PathBuf),
    NotFound(Vec<String>),
}

/// Finds the ONNX Runtime shared library, trying each place in turn.
pub fn find_library() -> Located {
    let mut searched = Vec::new();
    // An explicit choice is authoritative: a wrong path is reported, not silently replaced.
    for var in [ENV_ORT_LIB, ENV_ORT_DYLIB_PATH] {
        if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(value);
            if path.is_file() {
                return Located::Found(path);
            }
            searched.push(format!("${var}={} (not a file)", path.display()));
            return Located::NotFound(searched);
        }
    }
    let mut venvs: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        venvs.push(PathBuf::from(venv));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        roots.extend(dir.ancestors().map(Path::to_path_buf));
    }
    venvs.extend(roots.iter().map(|r| r.join(".venv")));
    for venv in &venvs {
        if !venv.is_dir() {
            continue;
        }
        for pkg in site_packages(venv) {
            if let Some(lib) = lib_in(&pkg.join("onnxruntime").join("capi")) {
                return Located::Found(lib);
            }
        }
        searched.push(format!("{}", venv.display()));
    }
    if let Some(pkg_dir) = python_package_dir() {
        if let Some(lib) = lib_in(&pkg_dir.join("capi")) {
            return Located::Found(lib);
        }
        searched.push(pkg_dir.join("capi").display().to_string());
    } else {
        searched.push("python3 -c 'import onnxruntime' (not importable)".to_string());
    }
    for dir in SYSTEM_DIRS {
        if let Some(lib) = lib_in(Path::new(dir)) {
            return Located::Found(lib);
        }
    }
    searched.push(SYSTEM_DIRS.join(", "));
    Located::NotFound(searched)
}

fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("python") {
                out.push(entry.path().join("site-packages"));
            }
        }
    }
    out.sort();
    out
}

/// The newest `libonnxruntime.so*` file in a directory (the versioned name sorts last).
fn lib_in(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
                .unwrap_or(false)
                && p.is_file()
        })
        .collect();
    found.sort();
    found.pop()
}

fn python_package_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('onnxruntime'); \
             print(s.submodule_search_locations[0] if s else '')",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| PathBuf::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lib_in_prefers_the_versioned_file() {
        let dir = std::env::temp_dir().join(format!("keel-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("libonnxruntime.so"), b"x").expect("write");
        std::fs::write(dir.join("libonnxruntime.so.1.32.0"), b"x").expect("write");
        std::fs::write(dir.join("libother.so"), b"x").expect("write");
        let found = lib_in(&dir).expect("found");
        assert_eq!(
            found.file_name().and_then(|n| n.to_str()),
            Some("libonnxruntime.so.1.32.0")
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn lib_in_empty_dir_finds_nothing() {
        let dir = std::env::temp_dir().join(format!("keel-locate-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert_eq!(lib_in(&dir), None);
        std::fs::remove_dir_all(&dir).ok();
    }
}
