"""The runs layer: run folders and what the tables may trust of them.

* :mod:`tp.runs.folder` — one owner per run folder, atomic writes, named errors for corrupt files;
* :mod:`tp.runs.versions` — what a run records about the code that made it (numerics version, step paths,
  configuration keys added later);
* :mod:`tp.runs.audit` — the checks of finished run folders before a table averages them;
* :mod:`tp.runs.provenance` — what a run says about its data, its code and its numbers, checked.

Imports the configuration and data layers, never training (docs/architecture.md, "Layers"); training imports
:mod:`tp.runs.folder` and :mod:`tp.runs.versions`, and only the tables use the audit.
"""
