"""What the report is made of while the sections run: section HTML, findings, warnings and the files written."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .report_html import img, table
from .report_templates import render_partial

log = logging.getLogger("robustbench_nas.analysis.report")  # the report's logger, whichever module warns


@dataclass
class ReportBuilder:
    """What a section adds to the report: its HTML (:meth:`section`), findings for the summary at the top,
    warnings (shown in the section and listed under the findings), and the files it wrote (listed and linked)."""

    out: Path
    warnings: list[tuple[str, str]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (id, title, html)
    scope: str | None = None  # the cell set and filter of the one ranking, stated above the findings
    files: list[tuple[str, str]] = field(default_factory=list)  # (relative path, what it holds)

    def warn(self, section: str, text: str) -> None:
        """A warning of ``section`` (shown in it and listed under the findings; logged once, duplicates dropped)."""
        if (section, text) not in self.warnings:
            self.warnings.append((section, text))
            log.warning("%s: %s", section, text)

    def warnings_html(self, section: str) -> str:
        """The warnings of ``section`` as HTML paragraphs."""
        items = [t for s, t in self.warnings if s == section]
        return "".join(f'<p class="warn">&#9888; {html.escape(t)}</p>' for t in items)

    def file(self, rel: str, what: str) -> str:
        """Record ``OUT/<rel>`` in the file list; returns a link to it."""
        self.files.append((rel, what))
        return f'<a href="{html.escape(rel)}">{html.escape(rel)}</a>'

    def finding(self, html_text: str) -> None:
        """One bullet of the summary of findings (HTML; keep it to one sentence with its numbers)."""
        self.findings.append(html_text)

    def section(self, sid: str, title: str, body: str) -> None:
        """A numbered section (``sid``: its anchor); the section's warnings are put first."""
        self.sections.append((sid, title, self.warnings_html(sid) + body))

    def section_warnings(self, section: str) -> list[str]:
        """The warnings of ``section`` (text), for the ``warnings`` macro of its partial."""
        return [t for s, t in self.warnings if s == section]

    def render_section(self, sid: str, title: str, **context: object) -> None:
        """A numbered section rendered from ``templates/sections/<sid>.html.j2`` with ``context`` and
        ``warnings`` (the section's warnings, which the partial puts first)."""
        self.sections.append((sid, title, str(render_partial(sid, warnings=self.section_warnings(sid), **context))))

    img = staticmethod(img)
    table = staticmethod(table)


__all__ = ["ReportBuilder"]
