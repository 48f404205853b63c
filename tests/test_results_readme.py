"""workflow/scripts/results_readme.py, section by section, on folders written here (the whole file is built
by the smoke run of tests/test_pipeline.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
import results_readme as readme  # noqa: E402


def _summary(results: Path, cell: str, **values) -> None:
    folder = results / "runs" / cell
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(values))


def test_the_header_names_every_code_version_and_device_and_marks_a_smoke_run(tmp_path):
    _summary(tmp_path, "test/bp/mnist/seed1", code_version="abc", device_name="CPU A")
    _summary(tmp_path, "test/dfa/mnist/seed1", code_version="def", device_name="CPU B")
    cfg = {"data": {"source": "real"}, "seeds": [1], "epochs": None}
    lines = readme.header(tmp_path, cfg)
    assert lines[0] == "# Results" and "from 2 run summaries" in lines[2]
    assert "* code version(s): abc, def" in lines and "* device(s): CPU A | CPU B" in lines
    smoke = readme.header(tmp_path, {**cfg, "data": {"source": "synthetic"}, "epochs": 2})
    assert smoke[0] == "# Results of a SMOKE RUN on synthetic data: not results" and "epochs: 2" in smoke[6]


def test_figures_are_listed_by_kind(tmp_path):
    assert readme.figures(tmp_path, {}, []) == []
    (tmp_path / "figures").mkdir()
    for name in ("curves_mnist.png", "damping_search_mnist.png", "figS5_alignment_mnist.png", "fig2_nullspace.png",
                 "ggn_alignment_mnist.png"):
        (tmp_path / "figures" / name).write_bytes(b"")
    lines = readme.figures(tmp_path, {"alignment": {"seed": 42}}, ["ggn_alignment_mnist.png"])
    text = "\n".join(lines)
    assert "seed 42" in text and "ggn_alignment" not in text  # the GGN figures are listed beyond the paper
    order = [next(k for k, line in enumerate(lines) if name in line) for name in
             ("figS5_alignment_mnist", "fig2_nullspace", "damping_search_mnist", "curves_mnist")]
    assert order == sorted(order)
    assert readme.beyond_the_paper(tmp_path, {}, ["ggn_alignment_mnist.png"])[0].startswith(
        "* `figures/ggn_alignment_mnist.png`")
