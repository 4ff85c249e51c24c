"""``--plot``: the loop's voltage, current and power over time as a PNG (matplotlib, when installed)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from v2gtool.errors import V2GToolError

if TYPE_CHECKING:
    from v2gtool.pcap.analysis import TraceAnalysis


class PlotError(V2GToolError):
    """--plot cannot be honoured: matplotlib is missing, nothing to plot, or the file cannot be written."""


def check_plotting() -> None:
    """Fail early, in one line, when matplotlib is not importable."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotError("--plot needs matplotlib, which is not installed (pip install matplotlib)")


def plot_series(analysis: TraceAnalysis, path: Path) -> None:
    """Draw EVSE/EV voltage, current and EVSE power of the charge loop into *path*."""
    check_plotting()
    importlib.import_module("matplotlib").use("Agg")  # no display: render to a file
    plt = importlib.import_module("matplotlib.pyplot")

    if not analysis.series:
        raise PlotError(f"--plot {path}: the capture has no charge-loop voltage or current to plot")
    start = analysis.start or 0.0
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    for ax, unit, names in ((axes[0], "V", ("EVSEPresentVoltage", "EVTargetVoltage", "EVPresentVoltage")),
                            (axes[1], "A", ("EVSEPresentCurrent", "EVTargetCurrent"))):
        for name in names:
            series = analysis.series.get(name)
            if series is not None and series.points:
                ax.plot([t - start for t, _ in series.points], [v for _, v in series.points], label=name)
        ax.set_ylabel(unit)
        ax.legend(loc="best", fontsize="small")
        ax.grid(True)
    power = analysis.power_series()
    axes[2].plot([t - start for t, _ in power], [p / 1000 for _, p in power], label="EVSE power")
    axes[2].set_ylabel("kW")
    axes[2].set_xlabel("s since capture start")
    axes[2].grid(True)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise PlotError(f"--plot {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
