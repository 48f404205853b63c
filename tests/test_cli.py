"""The command line as a user meets it: --version, the examples in --help, the header of `tp configs`, the
rounded final line of `tp train`."""

from __future__ import annotations

import re

import pytest

import tp
from tp.cli import build_parser, final_line, main


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"tp {tp.__version__}"


@pytest.mark.parametrize("argv,needle", [(["--help"], "tp train --method ddtp-linear --dataset mnist"),
                                         (["train", "--help"], "--seeds 1-10")])
def test_help_shows_examples_verbatim(capsys, argv, needle):
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    assert "examples:" in out and needle in out
    # RawDescriptionHelpFormatter keeps one example per line
    assert all(line.startswith("  ") for line in out.split("examples:\n")[1].splitlines() if line.strip())


def test_configs_prints_a_header_then_one_row_per_configuration(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["DATASET", "METHOD", "TUNINGS"]
    assert any(re.fullmatch(r"mnist\s+ddtp-linear\s+.*\btest\b.*", line) for line in lines[1:])


@pytest.mark.parametrize("summary,expected", [
    ({"status": "finished", "epochs_run": 1, "test_error_at_best_val": 5.4, "train_loss_last": 0.32123386035586665,
      "wall_time_s": 12.345},
     "finished 1 epoch; test error 5.40 % at best validation; last training loss 0.3212; 12.3 s"),
    ({"status": "pruned", "epochs_run": 6, "test_error_at_best_val": 88.123, "train_loss_last": 2.30258,
      "wall_time_s": 61.0},
     "pruned after 6 epochs; test error 88.12 % at best validation; last training loss 2.303; 61.0 s"),
    ({"status": "finished", "epochs_run": 300, "test_error_at_best_val": None, "train_loss_last": 1.2345e-05,
      "wall_time_s": 3.04},
     "finished 300 epochs; no test error (no validation epoch); last training loss 1.234e-05; 3.0 s"),
])
def test_final_line_is_rounded(summary, expected):
    assert final_line(summary) == expected


def test_train_prints_the_final_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--method", "bp", "--dataset", "mnist", "--source", "synthetic", "--epochs", "1",
                 "--set", "num_hidden=1", "--set", "size_hidden=8", "--no-progress", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(rf"{re.escape(str(out))}: finished 1 epoch; test error \d+\.\d\d % at best validation; "
                        r"last training loss [0-9.e+-]+; \d+\.\d s", line), line


def test_parser_lists_its_commands():
    help_text = build_parser().format_help()
    assert all(cmd in help_text for cmd in ("train", "download", "configs"))
