"""The Python example of the documentation (docs/methods.md, linked from the README) runs as written, and the
README's links to the reference pages lead to files that exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
API = ROOT / "docs" / "methods.md"


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", API.read_text(), flags=re.S)
    assert blocks, "docs/methods.md has no Python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(API), "exec"), namespace)
    out = namespace["out"]
    assert set(out.forward_grads) == set(namespace["params"])
    assert set(out.targets) == {1, 2, 3}
    printed = capsys.readouterr().out
    assert "torch.Size([256, 784])" in printed and "torch.Size([256, 10])" in printed


def test_readme_links_to_files_that_exist():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    assert "docs/methods.md" in links and "docs/pipeline.md" in links
    for page in [README] + sorted((ROOT / "docs").glob("*.md")):
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / link).exists(), (page.name, link)


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped (letters, digits, _, - and spaces
    kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> Iterator[str]:
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), flags=re.M):
        s = slug(heading)
        seen[s] = seen.get(s, -1) + 1  # a repeated heading's anchor gets -1, -2, …
        yield s if seen[s] == 0 else f"{s}-{seen[s]}"


def test_slug_follows_github():
    assert slug("The search (done, 2026-12-02)") == "the-search-done-2026-12-02"
    assert slug("Ideal damped GGN targets: the rule `ggnt`") == "ideal-damped-ggn-targets-the-rule-ggnt"
    assert slug("Committed runs, the run audit") == "committed-runs-the-run-audit"


def test_links_to_a_section_name_a_heading_that_exists():
    # a renamed heading breaks every link to it silently: the links of README and docs/ are checked here
    for page in [README] + sorted((ROOT / "docs").glob("*.md")):
        for target, anchor in re.findall(r"\]\(([^)#:\s]*)#([^)\s]+)\)", page.read_text()):
            linked = page.parent / target if target else page
            if linked.suffix == ".md":
                assert anchor in set(anchors(linked)), (page.name, f"{target}#{anchor}")


#: tracked files that may still name the external specification the project was first checked against: exact copies
#: of the official data (pinned by tests/data/official/SHA256SUMS) and the committed runs' own records
CITATION_EXCEPTIONS = ("tests/data/official/", "results/")


def test_code_and_docs_cite_the_projects_own_algorithms_page():
    """Issue 37: no citation of a document outside the repository; every anchor of docs/algorithms.md that code,
    configuration or docs cite names a heading of that page (a renamed heading breaks them, this finds it)."""
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    known = set(anchors(ROOT / "docs" / "algorithms.md"))
    outside, broken = [], []
    for name in files:
        path = ROOT / name
        if name.startswith(CITATION_EXCEPTIONS) or path.suffix not in (".py", ".md", ".smk", ".yaml", ".rst", ".sh") \
                and path.name not in ("Snakefile", "Makefile"):
            continue
        text = path.read_text(errors="replace")
        outside += [f"{name}: {m}" for m in re.findall(r"SPEC(?:\.md| §[\d.]+| Q\d+)", text)]
        broken += [f"{name}: {a}" for a in re.findall(r"algorithms\.md#([\w-]+)", text) if a not in known]
    assert not outside, outside[:10]
    assert not broken, broken[:10]
