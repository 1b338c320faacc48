"""The build's own records: what ``python -m optical_lightning.prepare`` was asked to do and what it
wrote per language; :mod:`.build` fills them in and :mod:`.manifest` reports them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from optical_lightning.prepare.records import Bitext, RetrievalFolder
from optical_lightning.prepare.sources import SOURCES


@dataclass(frozen=True)
class BuildConfig:
    """What ``python -m optical_lightning.prepare`` was asked to do."""

    out: Path
    cache: Path
    langs: tuple[str, ...] = ("sw", "so")
    sources: tuple[str, ...] = tuple(SOURCES)
    mirror: Path | None = None
    offline: bool = False
    #: let the build remove sets an earlier build made in ``out`` (otherwise it is refused; see :mod:`.guard`)
    replace: bool = False


@dataclass
class LanguageOutput:
    """What was written for one language (the manifest reports it)."""

    lang: str
    unions: dict[str, dict[str, object]] = field(default_factory=dict)
    eval_sets: dict[str, Bitext] = field(default_factory=dict)
    retrieval: dict[str, RetrievalFolder] = field(default_factory=dict)
    overlap_removed: dict[str, int] = field(default_factory=dict)
    eval_texts: int = 0
    #: file (relative to ``<out>``) -> :func:`~optical_lightning.data.alignment_check.file_report`
    alignment: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def built(self) -> bool:
        return any(u["pairs"] for u in self.unions.values()) or bool(self.eval_sets or self.retrieval)
