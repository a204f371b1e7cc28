"""Terminal output shared by every stage: one rich console, progress bars and summary tables.

:func:`configure_output` is the one place that decides how much the libraries under nexus print:
without ``-v`` their progress bars (tqdm: transformers, datasets, lm-eval) and their INFO logs
(MLflow's database set-up, ...) and Python warnings are off, so a command shows only nexus's own
progress and tables; ``nexus -v ...`` brings them all back.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

console = Console(stderr=True, highlight=False)
"""Progress and summaries go to stderr so that stdout stays machine-readable."""

QUIET_ENV = {
    # tqdm reads TQDM_<ARG> as the default of each argument (tqdm >= 4.66): lm-eval's bars
    "TQDM_DISABLE": "1",
    # Hugging Face's own switches: transformers' "Loading weights" / "Writing model shards", datasets'
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    # MLflow sets its logger to this level when imported (INFO by default: "Creating initial tables")
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
"""Set (unless the user set them) before any library is imported; child processes (data workers,
torchrun ranks, Spark's Python workers) inherit them."""


def configure_output(verbose: bool) -> None:
    """Quiet third-party progress bars, INFO logs and warnings, or (``verbose``) show all of them.

    Called once by the root command before any stage imports its libraries. Servers keep their own
    access and lifecycle logs (``nexus serve`` configures logging for itself).
    """
    if verbose:
        for key, value in QUIET_ENV.items():  # only what we set: a user's own setting stays
            if os.environ.get(key) == value and key in _set_by_us:
                del os.environ[key]
        _set_by_us.clear()
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        logging.captureWarnings(False)
        _quiet_tqdm(False)
        return
    for key, value in QUIET_ENV.items():
        if key not in os.environ:
            os.environ[key] = value
            _set_by_us.add(key)
    logging.getLogger().setLevel(logging.WARNING)
    # Python warnings from libraries (deprecations, "TypedStorage is deprecated", ...) go through
    # logging, where only errors pass; nexus reports its own problems as messages, not warnings.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)
    _quiet_tqdm(True)
    _quiet_imported()


def _quiet_imported() -> None:
    """The variables above are read when a library is imported; one imported already (by a script
    that imports it before calling this) is told directly."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()


_set_by_us: set[str] = set()
_tqdm_init: Any = None


def _quiet_tqdm(quiet: bool) -> None:
    """TQDM_DISABLE is only tqdm's default: lm-eval passes ``disable=False`` explicitly for its
    "Running loglikelihood requests" bar. So, quiet, every tqdm bar is created disabled (it still
    iterates and counts; it only draws nothing)."""
    global _tqdm_init
    try:
        from tqdm import std
    except ImportError:  # not installed: nothing draws tqdm bars
        return
    if quiet and _tqdm_init is None:
        _tqdm_init = std.tqdm.__init__

        def disabled(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            _tqdm_init(self, *args, **kwargs)

        std.tqdm.__init__ = disabled
    elif not quiet and _tqdm_init is not None:
        std.tqdm.__init__ = _tqdm_init
        _tqdm_init = None


def progress(transient: bool = False) -> Progress:
    """A progress display with counts, elapsed and remaining time (quiet when not a terminal)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not sys.stderr.isatty(),
    )


def transfer_progress() -> Progress:
    """A progress display for copies: bytes done of the total, speed, time left (transient, and quiet
    when not a terminal)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], text: bool = False) -> Table:
    """A rich table; the first column left-aligned, the others right-aligned (figures) or, with
    ``text=True``, left-aligned too."""
    t = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        t.add_column(name, justify="left" if i == 0 or text else "right")
    for row in rows:  # escaped: names, paths and AWS messages may hold ``[...]``, which rich reads as markup
        t.add_row(*(escape(fmt(v)) for v in row))
    return t


def human(value: Any) -> str:
    """A figure as people read it: ``16,260`` (not ``1.626e+04``), ``4.397``, ``0.0123``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 0.001:
        return f"{value:.4g}"
    return f"{value:.2e}"


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
