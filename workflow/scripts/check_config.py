"""Check pipeline configuration files before Snakemake reads them: YAML syntax with file, line and column, then
the pipeline schema (the same check the workflow runs, one line per bad key).

    python workflow/scripts/check_config.py config/my.yaml [more.yaml ...]
    make check-config CONFIGFILE=config/my.yaml

Snakemake 9 loads ``--configfile`` files before the workflow starts, and a syntax error there reads only
"Config file is not valid JSON or YAML" (no file, no line); this names both.  The files are checked as
``snakemake --configfile A B`` would use them: on top of ``config/config.yaml``, later files winning.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def yaml_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable YAML mapping, naming the file, line and column; None when it is one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path}: cannot be read: {exc}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        return f"{path}{where}: not valid YAML: {what or exc}"
    if data is not None and not isinstance(data, dict):
        return f"{path}: a pipeline configuration is a mapping of keys (e.g. 'seeds: [1, 2]'), not a {type(data).__name__}"
    return None


def merged(files: list[Path]) -> dict:
    """config/config.yaml updated by each file in turn, nested mappings merged (Snakemake's update_config)."""
    def update(base: dict, new: dict) -> dict:
        for key, value in new.items():
            base[key] = update(dict(base[key]), value) if isinstance(value, dict) and isinstance(
                base.get(key), dict) else value
        return base

    cfg: dict = {}
    for path in [REPO / "config" / "config.yaml", *files]:
        cfg = update(cfg, yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    return cfg


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    files = [Path(a) for a in argv]
    problems = [p for p in map(yaml_problem, [REPO / "config" / "config.yaml", *files]) if p]
    if not problems:
        sys.path.insert(0, str(Path(__file__).parent))
        from catalog_schema import catalog_schema, config_errors

        schema = catalog_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
        problems = config_errors(merged(files), schema)
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"ok: {', '.join(map(str, files))} (on top of config/config.yaml)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
