"""Report sections: the registry every section registers in (:mod:`.registry`) and the built-in sections
(:mod:`.ranking`, :mod:`.architecture`, :mod:`.prediction`, :mod:`.search`; imported by :mod:`..report`).

Importing this package loads only the registry, so a study module (``proxy_study.py``, ``twins.py``) registers its
section without importing the report, and the report imports the sections, never the other way round.
"""

from .registry import (
           DEFAULT_ORDER,
           SECTIONS,
           Section,
           SectionContext,
           list_sections,
           ordered_sections,
           register_section,
)

__all__ = ["DEFAULT_ORDER", "SECTIONS", "Section", "SectionContext", "list_sections", "ordered_sections",
           "register_section"]
