"""The docs' Python snippets run as written.

Every fenced ``python`` block of README.md, docs/*.md and examples/**/README.md is either
run, or, when the line before it says ``<!-- excerpt: examples/x.py -->``, checked to be
taken from that file (its lines appear there, in order) and the file imported. The
runnable blocks of one page run in order, in one namespace, in a fresh interpreter in an
empty folder, as a reader would paste them. None may warn from hetplug's code or from the
snippet itself (third-party libraries' own warnings are theirs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("README.md")])
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
EXCERPT = re.compile(r"^\s*<!--\s*excerpt:\s*(?P<path>\S+)\s*-->\s*$")


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """``[(line, code, excerpt path or None)]`` of the page's ``python`` blocks."""
    lines = page.read_text().splitlines()
    out: list[tuple[int, str, str | None]] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m["indent"], m["lang"], i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        if lang != "python":
            continue
        before = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        excerpt = EXCERPT.match(before)
        out.append((start + 1, "\n".join(body) + "\n", excerpt["path"] if excerpt else None))
    return out


BLOCKS = {page: python_blocks(page) for page in PAGES}
RUNNABLE = [page for page, blocks in BLOCKS.items() if any(path is None for _, _, path in blocks)]
EXCERPTS = [
    (page, line, code, path) for page, blocks in BLOCKS.items() for line, code, path in blocks if path
]

RUNNER = r"""
import json, sys, warnings
blocks = json.loads(sys.argv[1])
namespace = {"__name__": "__main__"}  # as a script the reader saved
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for line, code in blocks:
        exec(compile(code, f"<snippet at line {line}>", "exec"), namespace)
roots = sys.argv[2:]
ours = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught
        if w.filename.startswith("<snippet") or any(w.filename.startswith(r) for r in roots)]
print("HETPLUG-WARNINGS " + json.dumps(ours))
"""


def test_every_page_with_python_has_its_blocks_found():
    """The parser sees the blocks (a page whose fences it missed would pass vacuously)."""
    text = {page: page.read_text() for page in PAGES}
    for page, blocks in BLOCKS.items():
        assert len(blocks) == len(re.findall(r"^ *```python\s*$", text[page], re.M)), page


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_runnable_snippets_run_as_written_without_warnings(page, tmp_path):
    blocks = [(line, code) for line, code, path in BLOCKS[page] if path is None]
    roots = [str(ROOT / "hetplug"), str(ROOT / "adapters")]
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(blocks), *roots],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "examples")]),
        },
    )
    assert out.returncode == 0, f"{page.name}: {out.stderr[-4000:]}"
    marker = [ln for ln in out.stdout.splitlines() if ln.startswith("HETPLUG-WARNINGS ")]
    assert marker, out.stdout[-2000:]
    assert json.loads(marker[-1].split(" ", 1)[1]) == [], f"{page.name} warns"


@pytest.mark.parametrize(
    "page, line, code, path",
    EXCERPTS,
    ids=[f"{p.relative_to(ROOT)}:{line}" for p, line, _, _ in EXCERPTS],
)
def test_excerpts_are_taken_from_a_file_that_imports(page, line, code, path, monkeypatch):
    source = (page.parent / path).resolve()
    assert source.is_file(), f"{page.name}:{line}: {path} not found"
    lines = [ln.strip() for ln in source.read_text().splitlines()]
    at = 0
    for wanted in (ln.strip() for ln in code.splitlines() if ln.strip()):
        assert wanted in lines[at:], f"{page.name}:{line}: {wanted!r} is not in {path} (after line {at})"
        at = lines.index(wanted, at) + 1
    monkeypatch.syspath_prepend(str(source.parent))  # examples import their siblings
    spec = importlib.util.spec_from_file_location(f"_excerpt_{source.stem}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports without running its main
