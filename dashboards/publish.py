"""Ships a finished sqlite MLflow store with the project (``results/``): ``python -m dashboards.publish SRC DEST``.

MLflow records every artifact location as an absolute ``file://`` URI, which points nowhere once the store is
committed and cloned elsewhere. The published copy keeps the runs, params, metrics and tags as they were and
rewrites those locations to ``DEST/mlartifacts/...`` relative to the working directory (MLflow's local artifact
repository resolves relative paths against it), so ``mlflow ui``, ``mm1 plots``, ``mm1 fit-lr`` and ``mm1 lessons``
run from the repository root find the trials' artifacts (predictions, the sweep YAML and plan) in the clone.

The database is copied with sqlite's online backup (consistent even while a sweep still writes to the source).
Metric histories are thinned to every ``thin``-th step (default 25; a run's first and last step of each metric are
always kept): trials log ``train/loss`` every step, and a hundred trials of hundreds of steps would make the file
tens of MB; final values (what ``mm1 compare``, ``plots`` and ``lessons`` read) are untouched. Not copied: trial
checkpoints (tags ``mm1.checkpoint*`` keep the paths they had) and the figures ``mm1 plots`` logged to the sweeps'
parent runs (artifact folder ``dashboards/``: ``mm1 plots`` on the published store draws them again).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

ARTIFACTS = "mlartifacts"
REDRAWN = "dashboards"  # the artifact folder of mm1 plots' outputs (dashboards.runs.Store.log_outputs)


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


def _redrawn_in(root: Path):  # noqa: ANN202 - a shutil.copytree ignore callable
    """Leaves out the ``dashboards/`` folder at the top of a run's artifacts."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [REDRAWN] if Path(folder) == root and REDRAWN in names else []

    return ignore


def publish(source: Path, dest: Path, thin: int = 25) -> Path:
    """Copies the store ``source`` (a sqlite file) to ``dest/mlflow.db`` and its artifacts to ``dest/mlartifacts``
    with relocated URIs; returns the new database. Raises FileNotFoundError / ValueError with a one-line reason."""
    source, dest = Path(source), Path(dest)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such sqlite file")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "mlflow.db"
    target.unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as out:
        src.backup(out)
    shutil.rmtree(dest / ARTIFACTS, ignore_errors=True)
    relative = Path(ARTIFACTS) if dest == Path(".") else dest / ARTIFACTS
    with sqlite3.connect(target) as db:
        roots = {}
        for experiment_id, location in db.execute("SELECT experiment_id, artifact_location FROM experiments"):
            root = _local_path(location or "")
            if root is None:
                continue
            new_root = relative / str(experiment_id)
            roots[str(experiment_id)] = (str(root), new_root.as_posix())
            db.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                (new_root.as_posix(), experiment_id),
            )
        runs = db.execute("SELECT run_uuid, experiment_id, artifact_uri FROM runs").fetchall()
        for run_id, experiment_id, uri in runs:
            path = _local_path(uri or "")
            old_root, new_root = roots.get(str(experiment_id), (None, None))
            if path is None or old_root is None:
                continue
            try:
                inside = path.relative_to(old_root)
            except ValueError:
                raise ValueError(f"run {run_id}: artifacts at {uri} lie outside its experiment's {old_root}") from None
            if path.is_dir():  # each run's own folder: experiments may share one artifact root
                shutil.copytree(path, dest / ARTIFACTS / str(experiment_id) / inside, ignore=_redrawn_in(path))
            moved = f"{new_root}/{inside.as_posix()}"
            db.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (moved, run_id))
    if thin > 1:
        with sqlite3.connect(target) as db:
            db.execute(
                "CREATE TEMP TABLE ends AS SELECT run_uuid, key, MIN(step) AS first, MAX(step) AS last "
                "FROM metrics GROUP BY run_uuid, key"
            )
            db.execute(
                "DELETE FROM metrics WHERE step % ? != 0 AND NOT EXISTS (SELECT 1 FROM ends WHERE ends.run_uuid = "
                "metrics.run_uuid AND ends.key = metrics.key AND metrics.step IN (ends.first, ends.last))",
                (thin,),
            )
    with sqlite3.connect(target) as db:
        db.execute("VACUUM")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the sqlite file of the store to ship (e.g. mlflow.db)")
    parser.add_argument("dest", type=Path, help="folder, relative to the repository root (e.g. results)")
    parser.add_argument("--thin", type=int, default=25, help="keep every n-th step of metric histories (1: all)")
    args = parser.parse_args(argv)
    if args.dest.is_absolute():
        print("publish: error: dest must be relative to the repository root (e.g. results)", file=sys.stderr)
        return 2
    try:
        target = publish(args.source, args.dest, args.thin)
    except (FileNotFoundError, ValueError, sqlite3.Error) as exc:
        print(f"publish: error: {exc}", file=sys.stderr)
        return 2
    size = target.stat().st_size / 2**20
    print(f"published {target} ({size:.1f} MiB) and {args.dest / ARTIFACTS}; run mlflow and mm1 from here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
