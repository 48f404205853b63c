"""What a run says about itself, checked (tp.runs.provenance, issue 37): each hostile case a user tried is rejected with a
reason, and a rejected run is counted in the cell of its folder, its seed pending."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from test_audit import SMALL, _tables, edit_summary, real_run  # noqa: F401  (the module's fixture)
from tp.runs import provenance
from tp.catalog import FILES

OVERRIDES = {k: v for k, v in SMALL.items() if k != "epochs"}


def put(run: Path, root: Path, rel: str, **changes) -> Path:
    """A copy of ``run`` at ``root/rel`` with its summary (and config.yaml's seed) edited."""
    dst = root / rel
    shutil.copytree(run, dst)
    summary = edit_summary(dst, **changes)
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    (dst / "config.yaml").write_text(yaml.safe_dump({**cfg, "seed": summary["seed"]}, sort_keys=False))
    return dst


def reasons(tables, folders, source="synthetic"):
    runs = tables.load_runs([f / "summary.json" for f in folders], OVERRIDES, 3, source)
    return {f"{r.method}/{r.seed}": r.rejected if isinstance(r.rejected, str) else None for r in runs.itertuples()}


def test_a_copy_that_differs_only_in_its_timings_is_one_run(real_run, tmp_path):
    tables = _tables()
    good = put(real_run, tmp_path, "runs/test/bp/mnist/seed1")
    copy = put(real_run, tmp_path, "runs/test/bp/mnist/seed2", seed=2)
    lines = (copy / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    k = header.index("seconds")
    rows = [line.split(",") for line in lines[1:]]
    rows[0][k] = str(float(rows[0][k]) + 0.001)  # one timing digit
    (copy / "metrics.csv").write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    got = reasons(tables, [good, copy])
    assert got["bp/1"] is None and "equal those of seed1 (a copy" in got["bp/2"]


def test_a_run_copied_into_another_cell_is_named_in_both(real_run, tmp_path):
    """A seed copied into another method's folder with its method edited: whichever table reads either
    folder, neither is averaged, and each names the other (one run in two places)."""
    tables = _tables()
    original = put(real_run, tmp_path, "runs/test/bp/mnist/seed1")
    config = json.loads((real_run / "summary.json").read_text())["config"]
    same = put(real_run, tmp_path, "runs/test/dfa/mnist/seed1", method="dfa", config={**config, "method": "dfa"})
    # the same seed and configuration but for the cell's name: one computation in two cells, equal numbers expected
    assert provenance.copies([original, same]) == {}
    shutil.rmtree(same)
    other = put(real_run, tmp_path, "runs/test/dfa/mnist/seed1", method="dfa",  # method and two keys edited
                config={**config, "method": "dfa", "rule": "dfa", "lr": 0.5})
    provenance._digests_under.cache_clear()
    got = reasons(tables, [original])  # the table of BP alone still finds the copy beside it under runs/
    assert "runs/test/dfa/mnist/seed1 (one run in two places" in got["bp/1"]
    assert "runs/test/bp/mnist/seed1" in provenance.copies([other])[other]


def test_a_real_run_must_have_read_the_release(real_run, tmp_path):
    """A synthetic run relabelled "real" has no data_sha256; a run that read other bytes is named with the file."""
    tables = _tables()
    relabelled = put(real_run, tmp_path, "runs/test/bp/mnist/seed1", data_source="real")
    assert "data_sha256 is null" in reasons(tables, [relabelled], "real")["bp/1"]
    release = {f"MNIST/raw/{name}": digest for name, digest in FILES["mnist"].sha256}
    edit_summary(relabelled, data_sha256=release)
    assert reasons(tables, [relabelled], "real")["bp/1"] is None
    edit_summary(relabelled, data_sha256={**release, "MNIST/raw/t10k-images-idx3-ubyte": "0" * 64})
    assert "t10k-images-idx3-ubyte has SHA-256 000000000000…" in reasons(tables, [relabelled], "real")["bp/1"]
    edit_summary(relabelled, data_sha256={k: v for k, v in release.items() if "t10k" not in k})
    assert "the files of mnist are" in reasons(tables, [relabelled], "real")["bp/1"]


def test_the_code_version_must_be_a_commit_of_the_repository(real_run, tmp_path):
    tables = _tables()
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True,  # noqa: E731
                                    text=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "README").write_text("x\n")
    git("add", "README")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    run = put(real_run, tmp_path, "runs/test/bp/mnist/seed1", code_version="f" * 40)
    assert "names no commit of this repository" in reasons(tables, [run])["bp/1"]
    edit_summary(run, code_version=git("rev-parse", "HEAD") + "+dirty")
    provenance._repository.cache_clear()
    assert reasons(tables, [run])["bp/1"] is None
    edit_summary(run, code_version="tp 0.1.0")
    assert "is not a commit" in reasons(tables, [run])["bp/1"]


def test_a_relabelled_run_counts_in_the_cell_of_its_folder_with_its_seed_pending(real_run, tmp_path):
    """Relabelled from BP to DFA in its summary, the run in runs/test/bp is rejected and counted under BP (its
    folder), whose seed is pending; DFA's cell does not see it."""
    tables = _tables()
    good = put(real_run, tmp_path, "runs/test/bp/mnist/seed1")
    moved = put(real_run, tmp_path, "runs/test/bp/mnist/seed2", seed=2, method="dfa",
                test_error_at_best_val=1.0)  # (another number: not a copy)
    runs = tables.load_runs([good / "summary.json", moved / "summary.json"], OVERRIDES, 3, "synthetic")
    assert list(runs.method) == ["bp", "bp"] and "lies in test/bp/mnist/seed2" in runs.rejected[1]
    spec = {"tuning": "test", "quantity": "test_error_at_best_val", "rows": ["bp", "dfa"], "columns": ["mnist"]}
    tidy = tables.aggregate(runs, spec, [("bp", "mnist"), ("dfa", "mnist")], [1, 2, 3], "t").set_index("method_slug")
    assert (tidy.loc["bp", "n"], tidy.loc["bp", "rejected"], tidy.loc["bp", "missing"]) == (1, 1, 2)
    assert tidy.loc["bp", "cell"].endswith("(n=1; 2 of 3 seeds pending, 1 rejected)")
    assert tidy.loc["dfa", "cell"] == "pending: 0 of 3 seeds finished"
    assert "remove the folder to train it again" in tables.rejected_notes(runs)[0]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_the_catalog_knows_every_file_of_the_idx_releases(name):
    assert sorted(f for f, _ in FILES[name].sha256) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
    assert all(len(d) == 64 for _, d in FILES[name].sha256)


def test_every_committed_run_passes_the_provenance_checks():
    """The committed runs on real data read the release and name commits of this repository (when it is a full
    clone; a run folder outside a repository is not asked)."""
    results = Path(__file__).resolve().parents[1] / "results" / "runs"
    folders = sorted(p.parent for p in results.glob("*/*/*/seed*/summary.json"))
    if not folders:
        pytest.skip("no committed runs")
    bad = {}
    for folder in folders:
        s = json.loads((folder / "summary.json").read_text())
        why = provenance.data_problem(s, folder.parts[-2]) or provenance.commit_problem(folder, s.get("code_version"))
        if why:
            bad[str(folder.relative_to(results))] = why
    bad.update({str(k.relative_to(results)): v for k, v in provenance.copies(folders).items()})
    assert not bad, bad
