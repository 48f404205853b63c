"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    out = namespace["out"]
    assert set(out.forward_grads) == set(namespace["params"])
    assert set(out.targets) == {1, 2, 3}
    printed = capsys.readouterr().out
    assert "torch.Size([256, 784])" in printed and "torch.Size([256, 10])" in printed
