"""The Python example of the documentation (docs/methods.md, linked from the README) runs as written, and the
README's links to the reference pages lead to files that exist."""

from __future__ import annotations

import re
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
