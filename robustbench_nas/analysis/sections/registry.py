"""The report's section registry: every section (built-in or a study) registers here, the report runs them in order.

This module sits below every section and below the report itself: a section module (``sections/ranking.py``,
``proxy_study.py``, ``twins.py``, ...) imports it to register, and :mod:`..report` imports the section modules, so
no section imports the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import xarray as xr

from ...utils.registry import Registry
from ..report_builder import ReportBuilder
from ..report_config import AnalysisConfig

#: report position of a section registered without one: after the built-in sections and the studies
DEFAULT_ORDER = 1000


@dataclass
class SectionContext:
    """Everything a registered section may use (see :func:`register_section`).

    Attributes:
        ds: the store as a Dataset.
        targets: cells x targets, in reading order.
        features: cells x every feature of the one ranking (proxies, measures, params / FLOPs and the cell
            encodings of ``config.rank_encodings``).
        config: the analysis configuration.
        min_clean: the clean-accuracy filter in use (``None``: none).
        out, fig_dir: the output folder and its ``figures/`` folder.
        report: where the section adds its HTML, findings, warnings and files.
        summary: the headline summary (``summary.json``); a section adds its numbers under its own key.
        rank_features: the features ranked against the targets (no cell encodings, duplicates dropped).
        keep: per cell, whether it passes ``min_clean``.
        headline: the headline targets (findings are drawn for these).
    """

    ds: xr.Dataset
    targets: pd.DataFrame
    features: pd.DataFrame
    config: AnalysisConfig
    min_clean: float | None
    out: Path
    fig_dir: Path
    report: ReportBuilder
    summary: dict[str, Any]
    rank_features: pd.DataFrame
    keep: pd.Series
    headline: list[str]


@dataclass(frozen=True)
class Section:
    """One report section.

    Attributes:
        name: its name (``AnalysisConfig.sections``, ``rbnas analyze --sections``) and HTML anchor.
        run: adds the section to ``ctx.report`` (a section with nothing to show simply adds nothing).
        order: position in the report (lower first; ties keep registration order).
        ready: decides, before any section runs, whether this one runs at all (it may warn why not); ``None``:
            always.
    """

    name: str
    run: Callable[[SectionContext], None]
    order: int = DEFAULT_ORDER
    ready: Callable[[SectionContext], bool] | None = None


#: every report section, by name (a duplicate name is an error)
SECTIONS: Registry[Section] = Registry("report section")


def register_section(name: str, *, order: int = DEFAULT_ORDER, ready: Callable[[SectionContext], bool] | None = None
                     ) -> Callable[[Callable[[SectionContext], None]], Callable[[SectionContext], None]]:
    """Register a report section ``fn(ctx)`` run by :func:`..report.run_analysis` (when ``name`` is in
    ``AnalysisConfig.sections``, which by default holds every registered name). It adds its HTML with
    ``ctx.report.section(...)`` and may add findings, warnings and files. A name already registered raises
    ``ValueError``.

    Example:
        >>> @register_section("proxy_study")  # doctest: +SKIP
        ... def _study(ctx):
        ...     ctx.report.section("proxy_study", "Proxies on the release", "<p>...</p>")
    """

    def deco(fn: Callable[[SectionContext], None]) -> Callable[[SectionContext], None]:
        SECTIONS.add(name, Section(name, fn, order, ready))
        return fn

    return deco


def ordered_sections() -> list[Section]:
    """Every registered section in report order."""
    return sorted((s for _, s in SECTIONS.items()), key=lambda s: s.order)  # stable: equal orders keep registration order


def list_sections() -> list[str]:
    """Every registered section name, in report order."""
    return [s.name for s in ordered_sections()]


__all__ = ["DEFAULT_ORDER", "SECTIONS", "Section", "SectionContext", "list_sections", "ordered_sections",
           "register_section"]
