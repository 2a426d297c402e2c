"""Reading what sweeps wrote: SweepResult (a history, its configuration, its directory),
load_results (one sweep directory, its checksums verified), load_source (a sweep or a figure's
directory of sweeps, for tables and plots) and summarize."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..summary import summarize
from .history import read_history
from .refusals import SweepStateError, read_json

__all__ = ["SweepResult", "load_results", "load_source", "summarize"]
# the rows of a figure's directory, in order (sgd, cg: reproduce sgd-vs-cg)
FIGURE_ROWS = ("original", "censored", "censored_noise", "sgd", "cg")


@dataclasses.dataclass
class SweepResult:
    """A sweep's history (one row per repetition, network and epoch), its configuration and
    its directory (None for a sweep kept in memory)."""
    history: "pd.DataFrame"   # noqa: F821
    config: dict
    out: Path | None = None

    def epochs_done(self) -> dict:
        """Epochs recorded per repetition seed."""
        if len(self.history) == 0:
            return {}
        return {int(k): int(v) for k, v in self.history.groupby("repetition")["epoch"].max().items()}

    @property
    def complete(self) -> bool:
        """Every repetition of the configuration recorded all its epochs (True when the
        configuration is unknown and the repetitions agree)."""
        done = self.epochs_done()
        if not self.config or "seeds" not in self.config:
            return len(set(done.values())) <= 1
        return all(done.get(int(s), 0) == self.config["epochs"] for s in self.config["seeds"])

    def summary(self, **kw):
        return summarize(self.history, **kw)

    def plot(self, out_file=None):
        """The figure of :func:`pyireg.plots.plot_results` (a Figure, shown inline in a
        notebook; written as a PNG when ``out_file`` is given, which is returned)."""
        from ..plots import plot_results
        return plot_results(self, out_file)


def load_results(path) -> SweepResult:
    """Read a sweep saved in a directory (history.parquet + config.json); it may be incomplete
    (``SweepResult.complete`` says). The rows are verified against the checksum recorded with
    them (a history of the format before checksums is read as it is). Errors name the file."""
    path = Path(path)
    if not (path / "history.parquet").exists():
        if (path / "packs.json").exists():
            done = len(list((path / "packs").glob("pack-*.parquet"))) if (path / "packs").is_dir() else 0
            raise FileNotFoundError(f"path: no history.parquet in {path} yet: this sweep trains in packs and writes "
                                    f"it when every pack is finished ({done} finished so far, in packs/); resume "
                                    "it to finish")
        raise FileNotFoundError(f"path: no history.parquet in {path} (not a sweep directory, or no epoch finished yet)")
    hist, meta = read_history(path / "history.parquet", "path", legacy=True)
    if not isinstance(meta, dict):        # every pyireg writes its record; pandas' to_parquet drops it
        raise SweepStateError(f"path: {path / 'history.parquet'} has no record of a pyireg sweep (rewritten by "
                              "another program, which drops pyireg's metadata and its checksum), so its values "
                              "cannot be verified; restore the sweep's own history")
    config = read_json(path / "config.json", "path") if (path / "config.json").exists() else {}
    return SweepResult(hist, config, path)


def load_source(path) -> tuple[dict, dict]:
    """The sweeps of a directory written by ``sweep`` (one, key None) or ``reproduce`` (one per
    row of the figure), and the figure's metadata (figure.json; {} for a plain sweep)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"source: {path} is not a directory written by sweep or reproduce")
    meta = read_json(path / "figure.json", "source") if (path / "figure.json").exists() else {}
    rows = {r: load_results(path / r) for r in FIGURE_ROWS if (path / r / "history.parquet").exists()}
    started = [r for r in FIGURE_ROWS + ("teacher",) if (path / r).is_dir()]
    if started and not meta:      # reproduce writes figure.json after its last row: it was interrupted
        meta = {"incomplete": f"INCOMPLETE: {path} has no figure.json (the reproduction did not finish; rows "
                              f"with results: {', '.join(rows) or 'none'}); resume it to draw the whole figure"}
    if not rows:
        rows = {None: load_results(path)}
    return rows, meta
