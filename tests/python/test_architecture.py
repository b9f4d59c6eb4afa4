"""The architecture as docs/ARCHITECTURE.md and crates/README.md draw it, checked on the code.

- crates/README.md names every crate once, in floors, and no crate depends on one listed above it
  (read from `cargo metadata`, normal and build dependencies);
- no file of a crate imports a file that (directly or through others) imports it back
  (`crate::`, `super::` and `self::` paths; unit-test modules left out);
- no source file outside tests is much over 600 lines.
"""

import glob
import json
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_LINES = 650


def crate_order():
    text = open(os.path.join(ROOT, "crates", "README.md"), encoding="utf-8").read()
    return re.findall(r"\| \[`(keel[a-z-]*)`\]", text)


def workspace_packages():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)["packages"]


def test_crate_index_lists_every_crate_and_dependencies_point_down():
    order = crate_order()
    packages = workspace_packages()
    names = sorted(p["name"] for p in packages)
    assert sorted(order) == names, f"crates/README.md lists {sorted(order)}, the workspace has {names}"
    upward = []
    for p in packages:
        mine = order.index(p["name"])
        for d in p["dependencies"]:
            if d["name"] in order and d.get("kind") in (None, "build") and order.index(d["name"]) <= mine:
                upward.append(f'{p["name"]} -> {d["name"]}')
    assert not upward, f"dependencies pointing up the floors of crates/README.md: {upward}"


def module_files(src):
    files = {}
    for path in glob.glob(os.path.join(src, "**", "*.rs"), recursive=True):
        parts = os.path.relpath(path, src)[:-3].split(os.sep)
        if parts[-1] == "tests" or parts[0] == "bin":
            continue
        if parts[-1] in ("lib", "main"):
            module = ()
        elif parts[-1] == "mod":
            module = tuple(parts[:-1])
        else:
            module = tuple(parts)
        files[module] = path
    return files


def imports(src):
    files = module_files(src)
    edges = {}
    for module, path in files.items():
        text = open(path, encoding="utf-8").read()
        cut = text.find("#[cfg(test)]\nmod tests {")
        if cut >= 0:
            text = text[:cut]
        text = re.sub(r"//[^\n]*", "", text)
        is_dir_module = path.endswith(("mod.rs", "lib.rs", "main.rs"))
        targets = set()
        for m in re.finditer(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
            base, rest = m.group(1), m.group(2).split("::")[1:]
            if base == "crate":
                full = rest
            elif base == "self":
                full = list(module) + rest
            else:
                parent = list(module) if is_dir_module else list(module[:-1])
                full = parent[:-1] + rest if is_dir_module else parent + rest
            for k in range(len(full), -1, -1):
                if tuple(full[:k]) in files:
                    if tuple(full[:k]) != module:
                        targets.add(tuple(full[:k]))
                    break
        edges[module] = targets
    return edges


def find_cycle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_files_of_a_crate():
    cycles = {}
    for src in sorted(glob.glob(os.path.join(ROOT, "crates", "*", "src"))):
        cycle = find_cycle(imports(src))
        if cycle:
            crate = os.path.basename(os.path.dirname(src))
            cycles[crate] = " -> ".join("::".join(m) or "lib" for m in cycle)
    assert not cycles, f"import cycles between files: {cycles}"


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "lib.rs").write_text("mod a;\nmod b;\n")
    (src / "a.rs").write_text("use crate::b::B;\npub struct A;\n")
    (src / "b.rs").write_text("use super::a::A;\npub struct B;\n")
    assert find_cycle(imports(str(src))) == [("a",), ("b",), ("a",)]


def test_no_source_file_is_much_over_600_lines():
    long = []
    for path in glob.glob(os.path.join(ROOT, "crates", "*", "src", "**", "*.rs"), recursive=True):
        if os.path.basename(path) == "tests.rs":
            continue
        text = open(path, encoding="utf-8").read()
        cut = text.find("#[cfg(test)]\nmod tests {")
        lines = (text if cut < 0 else text[:cut]).count("\n")
        if lines > MAX_LINES:
            long.append(f"{os.path.relpath(path, ROOT)}: {lines}")
    assert not long, f"split these along their seams: {long}"
