"""The pipeline's configuration schema with its enumerations taken from the catalog when the Snakefile loads.

``workflow/schemas/config.schema.yaml`` describes the experiment matrix (config/config.yaml) but lists no
method, dataset or tuning: those come from :mod:`tp.catalog` (and the configurations of ``tp/configs/``) here,
so a dataset or method added to the catalog is valid in the pipeline with no second list to keep in step.

    schema = catalog_schema(Path("workflow/schemas/config.schema.yaml"))   # a dict for jsonschema
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tp import catalog
from tp.config import available_configs


def catalog_schema(path: Path) -> dict:
    """The schema of ``path`` with ``$defs`` ``method``, ``dataset``, ``data`` (the dataset files),
    ``aligned_dataset`` (datasets with alignment-figure configurations) and ``tuned`` (the tunings with an
    objective: the tables' and the searches') filled from the catalog, in its order."""
    schema = yaml.safe_load(path.read_text())
    configs = available_configs()
    aligned = {d for (d, _), tunings in configs.items() if "alignment" in tunings}
    enums = {
        "method": list(catalog.METHODS),
        "dataset": list(catalog.DATASETS),
        "data": list(catalog.FILES),
        "aligned_dataset": [d for d in catalog.DATASETS if d in aligned],
        "tuned": [t.slug for t in catalog.TUNINGS.values() if t.objective],
    }
    for name, values in enums.items():
        schema["$defs"][name] = {**schema["$defs"].get(name, {}), "enum": values}
    return schema


def config_errors(cfg: dict, schema: dict, most: int = 10) -> list[str]:
    """Every way ``cfg`` breaks ``schema`` (at most ``most``), one line each naming the key: "config key
    'tables.table1.columns[2]': 'mnst' is not one of ['mnist', …]"; an unknown key lists the valid ones."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    lines = []
    for error in sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path]):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        message = error.message
        if error.validator == "additionalProperties":
            valid = sorted(error.schema.get("properties", {}))
            message += f"; valid keys here: {', '.join(valid)}"
        if len(message) > 300:
            message = message[:300] + " …"
        lines.append(f"config key {where or '(top level)'!r}: {message}")
    return lines[:most] + ([f"… and {len(lines) - most} more"] if len(lines) > most else [])
