"""The report's Jinja2 environment: the page (``templates/report.html.j2``) and one partial per section
(``templates/sections/<name>.html.j2``, sharing the macros of ``templates/macros.html.j2``).

Autoescaped: every value a section passes is text unless it is a finding's markup or a rendered partial
(:class:`markupsafe.Markup`), so a feature name with ``<`` or ``&`` cannot break the page.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2
from markupsafe import Markup


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The packaged templates, autoescaped, undefined names an error (a typo in a partial fails the report)."""
    return jinja2.Environment(loader=jinja2.PackageLoader("robustbench_nas.analysis", "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)  # fmt: skip


def render_partial(name: str, **context: Any) -> Markup:
    """``templates/sections/<name>.html.j2`` rendered with ``context`` (markup, ready to be put in the page)."""
    return Markup(environment().get_template(f"sections/{name}.html.j2").render(**context))


__all__ = ["environment", "render_partial"]
