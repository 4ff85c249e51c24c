"""``--plot``: the loop's voltage, current and power over time as a PNG (matplotlib, when installed)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode

if TYPE_CHECKING:
    from v2gtool.pcap.analysis import TraceAnalysis


class PlotError(V2GToolError):
    """--plot cannot be honoured for this capture: nothing to plot, or the file cannot be written.
    Exit 2, so that a pipeline tells it from exit 1, "the trace shows a protocol error"."""

    exit_code = ExitCode.USAGE


class MatplotlibMissing(PlotError):
    """--plot needs matplotlib, which this machine lacks."""

    exit_code = ExitCode.ENVIRONMENT


def check_plotting() -> None:
    """Fail early, in one line, when matplotlib is not importable."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MatplotlibMissing("--plot needs matplotlib, which is not installed (pip install matplotlib)")


# The panels, each with the series it draws: DC loops report voltage and current (ISO 15118-20
# DC_ChargeLoop, -2 CurrentDemand, DIN), AC loops the EVSE's active power (-20 AC_ChargeLoopRes).
_PANELS = (("V", ("EVSEPresentVoltage", "EVTargetVoltage", "EVPresentVoltage")),
           ("A", ("EVSEPresentCurrent", "EVTargetCurrent")))
Points = list[tuple[float, float]]


def _panels(analysis: TraceAnalysis) -> list[tuple[str, list[tuple[str, Points]]]]:
    """``(unit, [(label, points)])`` of each panel that has something to draw."""
    panels: list[tuple[str, list[tuple[str, Points]]]] = []
    for unit, names in _PANELS:
        lines = [(name, analysis.series[name].points) for name in names
                 if name in analysis.series and analysis.series[name].points]
        if lines:
            panels.append((unit, lines))
    power = [("EVSE power", [(t, w / 1000) for t, w in analysis.power_series()])]
    active = analysis.series.get("EVSEPresentActivePower")
    if active is not None:
        power.append(("EVSEPresentActivePower", [(t, w / 1000) for t, w in active.points]))
    power = [(label, points) for label, points in power if points]
    if power:
        panels.append(("kW", power))
    return panels


def plot_series(analysis: TraceAnalysis, path: Path) -> None:
    """Draw the charge loop's voltage, current and power, those the capture has, into *path*."""
    panels = _panels(analysis)
    if not panels:
        raise PlotError(f"--plot {path}: the capture has no charge-loop voltage, current or power to plot")
    check_plotting()
    importlib.import_module("matplotlib").use("Agg")  # no display: render to a file
    plt = importlib.import_module("matplotlib.pyplot")
    start = analysis.start or 0.0
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(10, 2.7 * len(panels)), squeeze=False)
    for ax, (unit, lines) in zip(axes[:, 0], panels, strict=True):
        for label, points in lines:
            ax.plot([t - start for t, _ in points], [v for _, v in points], label=label)
        ax.set_ylabel(unit)
        ax.legend(loc="best", fontsize="small")
        ax.grid(True)
    axes[-1, 0].set_xlabel("s since capture start")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise PlotError(f"--plot {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
