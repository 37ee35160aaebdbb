"""The write stage's exports, written in a worker process while the build's own process writes the rest.

The exports (JSON Lines for every trainer) are the longest part of the write stage: each row becomes a dict,
goes through a format's writer and is dumped as JSON, about 100 µs a row. Nothing else in the write stage
needs them until the report counts their losses, so with two or more local workers they run in worker
processes (one export per task) while this process writes the Parquet outputs and computes the report's
statistics. Each worker writes its files under `<build>/.dataforge-exports/` (housekeeping: never an output);
`ExportJob.collect` moves them into place once the build has listed them as pending, so a killed build leaves
no file that no list names. The bytes are those `write_exports` writes in this process.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.executor import LocalExecutor, default_workers
from ..exports import Exported
from ..recipe import LoadedRecipe
from ..streams import Tables

SCRATCH = ".dataforge-exports"


@dataclass(frozen=True)
class ExportParams:
    scratch: str
    dataset: str
    parts: dict[str, list[str]]  # split → its Parquet parts, in row order


def export_one(params: ExportParams, name: str) -> tuple[Exported, dict[str, str]]:
    """One export written under the scratch folder (the shard function of the job): its counts and
    {file: sha256}, file names relative to the build directory."""
    from .write import write_exports

    splits = {split: Tables.parts([Path(p) for p in paths]) for split, paths in params.parts.items()}
    return write_exports(Path(params.scratch), [name], params.dataset, splits, lambda _name: None)[name]


def clear_scratch(out: Path) -> None:
    """Remove what a killed build left in the scratch folder."""
    shutil.rmtree(out / SCRATCH, ignore_errors=True)


class ExportJob:
    """The recipe's exports running in worker processes, in a thread of this process that waits on them."""

    def __init__(self, out: Path, names: list[str], params: ExportParams, workers: int) -> None:
        self.out, self.names, self.params = out, names, params
        self._executor = LocalExecutor(workers, spawn_one=True)
        self._result: list[tuple[Exported, dict[str, str]]] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dataforge-exports", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, out: Path, loaded: LoadedRecipe, parts: dict[str, list[Path]]) -> ExportJob | None:
        """The job, started, when it is worth a process: a local engine with two or more workers and splits of
        at least the engine's parallel threshold; else None (the exports are written in this process)."""
        from ..engine.runner import parallel_bytes

        names = list(loaded.recipe.outputs.exports)
        engine = loaded.recipe.engine
        workers = engine.workers or default_workers()
        size = sum(os.path.getsize(p) for paths in parts.values() for p in paths)
        if not names or engine.name != "local" or workers < 2 or size < parallel_bytes():
            return None
        clear_scratch(out)
        params = ExportParams(
            str(out / SCRATCH), loaded.recipe.name, {split: [str(p) for p in paths] for split, paths in parts.items()}
        )
        # One process fewer than the engine's workers: this process writes the rest of the build meanwhile.
        return cls(out, names, params, min(len(names), workers - 1))

    def _run(self) -> None:
        try:
            self._result = self._executor.map(export_one, self.params, self.names, describe=self._describe)
        except BaseException as exc:  # noqa: BLE001 - raised again in the build's own thread by `collect`
            self._error = exc
        finally:
            self._executor.close(kill=self._error is not None)

    def _describe(self, index: int) -> str:
        return f"export {self.names[index]}"

    def collect(self, note: Any) -> dict[str, tuple[Exported, dict[str, str]]]:
        """Wait for every export, move its files into the build directory (each `note`d first) and return what
        `write_exports` returns."""
        self._thread.join()
        if self._error is not None:
            clear_scratch(self.out)
            raise self._error
        assert self._result is not None
        scratch = Path(self.params.scratch)
        for _exported, hashes in self._result:
            for name in hashes:
                note(name)
                target = self.out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(scratch / name, target)
        clear_scratch(self.out)
        return dict(zip(self.names, self._result, strict=True))

    def abandon(self) -> None:
        """After a failure elsewhere in the write: wait for the workers and drop their files."""
        self._thread.join()
        clear_scratch(self.out)
