"""`python -m optical_lightning.prepare`: parsers on real upstream slices, cleaning, de-duplication,
the evaluation-overlap check, atomic manifest writing and the mirror importer.

Nothing here downloads anything (the one network test is marked ``slow``); fixtures are described
in ``tests/fixtures/prepare/README.md``.
"""

from __future__ import annotations

import gettext
import importlib.util
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import FIXTURES

from optical_lightning.data.bitext import BitextPair
from optical_lightning.evaluation.mcqa import read_mcqa
from optical_lightning.prepare import build as build_module
from optical_lightning.prepare.build import BuildConfig, build
from optical_lightning.prepare.clean import clean_ui_pairs, clean_ui_text, drop_reason, ui_bitext
from optical_lightning.prepare.cli import main
from optical_lightning.prepare.dedup import union
from optical_lightning.prepare.fetch import debian_package, pypi_wheel, unpack_deb
from optical_lightning.prepare.gettext_files import message_pairs, parse_mo, parse_po
from optical_lightning.prepare.overlap import eval_texts, remove_overlap
from optical_lightning.prepare.records import Bitext, SourceContext, SourceResult, SourceSkipped
from optical_lightning.prepare.sources import (
    babel_cldr,
    django_po,
    kolibri_json,
    mediawiki_json,
    mirror,
    udhr_html,
    wordpress_mo,
)
from optical_lightning.prepare.text import normalize
from optical_lightning.prepare.tsv import format_tsv, read_tsv

FIX = Path(__file__).parents[1] / "fixtures" / "prepare"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def triples(pairs: list[BitextPair]) -> set[tuple[str, str, str]]:
    return {(p.id, p.en, p.tgt) for p in pairs}


def zip_tree(root: Path, dest: Path) -> Path:
    """A fake wheel: the fixture tree zipped with the wheel's own member paths."""
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root).as_posix())
    return dest


# --- parsers on real slices ---------------------------------------------------------------------

def test_kolibri_wheel_pairs_align_by_message_id(tmp_path):
    wheel = zip_tree(FIX / "kolibri", tmp_path / "kolibri-0.0-py3-none-any.whl")
    raw = kolibri_json.wheel_pairs(wheel, "sw_TZ")
    assert len(raw) == 54
    assert ("kolibri:AuthBase.accessAsGuest", "Explore without account", "Tazama bila kuwa na akaunti") in triples(raw)
    b = ui_bitext("kolibri", "sw", raw, "MIT", "test")
    got = {p.id: (p.en, p.tgt) for p in b.pairs}
    assert got["kolibri:FilteredChannelListContainer.numChannelsAvailable"] == ("channels available", "vituo vinapatikana")
    assert got["kolibri:AuthBase.photoCreditLabel"] == ("Photo credit:", "Picha kwa hisani ya:")
    assert "kolibri:AuthBase.poweredBy" not in got  # "Kolibri {version}" on both sides: untranslated
    # PicturePasswordStrings.* have no Swahili text upstream; "Kolibri {version}" is untranslated
    assert b.dropped == {"empty": 6, "untranslated": 1} and b.raw == 54 and len(b.pairs) == 47


def test_django_po_pairs_skip_header_and_keep_both_plural_forms(tmp_path):
    text = (FIX / "django/django/contrib/admin/locale/sw/LC_MESSAGES/django.po").read_text("utf-8")
    pairs = {(p.en, p.tgt) for p in django_po.po_pairs(text, "contrib/admin/django")}
    assert ("Are you sure?", "Una uhakika?") in pairs
    assert ("Please correct the error below.", "Tafadhali sahihisha kosa lifuatalo.") in pairs
    assert ("Please correct the errors below.", "Tafadhali sahihisha makosa yafuatayo") in pairs
    assert ("entries", "maingizo") in pairs
    assert not any(en.startswith("Project-Id-Version") or not en for en, _ in pairs)
    wheel = zip_tree(FIX / "django", tmp_path / "django-0.0-py3-none-any.whl")
    raw = django_po.wheel_pairs(wheel, "sw")
    assert {p.id.split(":")[1] for p in raw} == {"contrib/admin/django", "contrib/sessions/django"}
    assert ("session", "kipindi") in {(p.en, p.tgt) for p in raw}


PO = r'''msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"

#, fuzzy
msgid "Fuzzy one"
msgstr "Sio hakika"

msgid "Empty"
msgstr ""

#, python-format
msgctxt "menu"
msgid ""
"Two "
"lines"
msgstr "Mistari \"miwili\""

msgid "%(n)s day"
msgid_plural "%(n)s days"
msgstr[0] "siku %(n)s"
msgstr[1] ""

#~ msgid "Obsolete"
#~ msgstr "Imepitwa"
'''


def test_po_parser_handles_fuzzy_context_continuations_and_obsolete():
    messages = parse_po(PO)
    assert [m.msgid for m in messages] == ["Fuzzy one", "Empty", "Two lines", "%(n)s day"]
    assert messages[0].fuzzy and not messages[2].fuzzy
    assert messages[2].context == "menu" and messages[2].msgstrs == ('Mistari "miwili"',)
    assert [(en, tgt) for _, en, tgt in message_pairs(messages)] == [
        ("Two lines", 'Mistari "miwili"'), ("%(n)s day", "siku %(n)s")]


def test_po_parser_agrees_with_babel_when_available():
    pofile = pytest.importorskip("babel.messages.pofile")
    text = (FIX / "django/django/contrib/admin/locale/sw/LC_MESSAGES/django.po").read_text("utf-8")
    ours = [(m.msgid, m.msgstrs, m.msgid_plural) for m in parse_po(text)]
    theirs = [(m.id[0], tuple(m.string), m.id[1]) if isinstance(m.id, tuple) else (m.id, (m.string,), "")
              for m in pofile.read_po(io.StringIO(text)) if m.id]
    assert sorted(ours) == sorted(theirs)


def test_mo_reader_matches_gettext_and_wordpress_pairs():
    data = (FIX / "wordpress/sw.mo").read_bytes()
    catalog = gettext.GNUTranslations(io.BytesIO(data))._catalog  # the stdlib reader, as a reference
    for m in parse_mo(data):
        key = f"{m.context}\x04{m.msgid}" if m.context else m.msgid
        if m.msgid_plural:
            assert catalog[(key, 0)] == m.msgstrs[0]
        else:
            assert catalog[key] == m.msgstrs[0]
    raw = wordpress_mo.mo_pairs(data)
    assert ("Register", "Jiandikishe") in {(p.en, p.tgt) for p in raw}
    assert ("Approved", "Kubaliwa") in {(p.en, p.tgt) for p in raw}  # old "Approved|Right Now" context
    kept, dropped = clean_ui_pairs(raw)
    got = {(p.en, p.tgt) for p in kept}
    assert ("links deleted", "viuongo vimefutwa") in got
    assert ("Trash", "Taka") in got
    assert ("Submitted on:", "Imetumwa:") in got
    assert ("Your browser’s settings do not permit this website to use Google Gears.",
            "Brauza yako hairuhusu saiti hii kutumia Gia za Google.") in got
    assert dropped["duplicate"] == 12  # "Add New"/"Trash" under several msgctxt values


def test_babel_display_names_pair_by_code():
    names = json.loads((FIX / "babel/cldr_names.json").read_text("utf-8"))
    raw = babel_cldr.display_name_pairs(names["en"], names["sw"])
    assert ("babel:languages:so", "Somali", "Kisomali") in triples(raw)
    assert ("babel:currencies:KES", "Kenyan Shilling", "Shilingi ya Kenya") in triples(raw)
    b = ui_bitext("babel", "so", babel_cldr.display_name_pairs(names["en"], names["so"]), "CLDR", "test")
    got = {p.id: p.tgt for p in b.pairs}
    assert got["babel:territories:SO"] == "Soomaaliya" and got["babel:variants:1901"]
    assert "babel:territories:KE" not in got and b.dropped["untranslated"] >= 1  # "Kenya" == "Kenya"


def test_mediawiki_tree_pairs_and_wikitext_cleaning():
    root = FIX / "mediawiki"
    so = mediawiki_json.tree_pairs(root, "so")
    assert ("mediawiki:search", "Search", "Raadi") in triples(so)
    assert not any(p.id == "mediawiki:@metadata" for p in so)
    sw = {p.id: (p.en, p.tgt) for p in ui_bitext("mediawiki", "sw", mediawiki_json.tree_pairs(root, "sw"),
                                                 "GPL", "test").pairs}
    assert sw["mediawiki:viewcount"] == ("This page has been accessed times.", "Ukurasa huu umetembelewa mara.")
    assert sw["mediawiki:nstab-user"] == ("User page", "Ukurasa wa mtumiaji")
    assert sw["mediawiki:returnto"] == ("Return to.", "Rudia.")
    assert sw["mediawiki:category-empty"] == ("This category currently contains no pages or media.",
                                              "Jamii hii kwa sasa haina kurasa au midia.")


def test_udhr_sections_align_by_article_number():
    read = {code: udhr_html.parse_declaration((FIX / f"udhr/{code}.html").read_text("utf-8"))
            for code in ("eng", "swh", "som")}
    assert list(read["eng"]) == ["preamble", "1", "2", "3"]
    assert read["eng"]["3"] == ["Everyone has the right to life, liberty and the security of person."]
    assert len(read["eng"]["2"]) == 2
    s = udhr_html.retrieval_set(read["eng"], read["swh"], "sw", "test")
    assert s.name == "udhr-sw-en" and [q for q, _ in s.queries] == ["udhr-preamble", "udhr-article-01",
                                                                      "udhr-article-02", "udhr-article-03"]
    assert dict(s.queries)["udhr-article-03"] == ("Kila mtu ana haki ya kuishi, haki ya uhuru, "
                                                   "na haki ya kulindwa nafsi yake.")
    assert ("udhr-article-03", "udhr-article-03-en", 1) in s.qrels
    assert dict(s.docs)["udhr-article-03-en"] == dict(s.queries_en)["udhr-article-03"]
    assert read["eng"]["2"][1] in s.extra_texts  # single paragraphs also guard against leakage


# --- cleaning ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("Return to $1.", "Return to."),
    ("{{PLURAL:$1|one page|$1 pages}} changed", "pages changed"),
    ("$1 {{GENDER:$2|changed}} the page", "changed the page"),
    ("See [[Special:Log|the log]] or [[$1]]", "See the log or"),
    ("[https://example.org our site] says '''hello'''", "our site says hello"),
    ("{count, number} {count, plural, one {learner} other {learners}} struggling", "learners struggling"),
    ("Signed in as {user}", "Signed in as"),
    ("%(count)s items in %(name)s", "items in"),
    ("Version %1$s of %2$s is 100%% ready", "Version of is 100% ready"),
    ("Delete %s?", "Delete?"),
    ("<strong>Bold</strong> &amp; <a href=\"%s\">link</a>&nbsp;here", "Bold & link here"),
    ("&Open file", "Open file"),
    ("Script error: \"$2\" is not a function.", "Script error: is not a function."),
    ("Name:", "Name:"),
    ("  many\tspaces\nand lines ", "many spaces and lines"),
])
def test_clean_ui_text(raw, clean):
    assert clean_ui_text(raw) == clean


@pytest.mark.parametrize("en, tgt, reason", [
    ("", "Hifadhi", "empty"),
    ("Save", "Save", "untranslated"),
    ("Kolibri", "kolibri", "untranslated"),  # identical after normalisation (case)
    ("https://example.org", "https://example.org/sw", "no_text"),
    ("100", "100", "no_text"),
    ("Save", "Hifadhi", None),
])
def test_drop_reason(en, tgt, reason):
    assert drop_reason(en, tgt) == reason


def test_clean_ui_pairs_drops_markup_placeholder_only_and_duplicates():
    raw = [BitextPair("a", "Save", "Hifadhi"), BitextPair("b", " save ", "HIFADHI"), BitextPair("c", "$1", "$1"),
           BitextPair("d", "{{int:x}}", "Hello"), BitextPair("e", "an *exact* decimal, like $0.75$", "kama $0.75$"),
           BitextPair("f", "{| class=wikitable |}", "{| |}"), BitextPair("g", "\\frac{1}{2}", "\\frac{1}{2} nusu"),
           BitextPair("h", "See https://example.org", "https://example.org/sw 2")]
    kept, dropped = clean_ui_pairs(raw)
    assert [p.id for p in kept] == ["a"]
    # c, d, f become empty (placeholder, template, wikitext table); e, g keep TeX; h is a bare URL
    assert dropped == {"duplicate": 1, "empty": 3, "markup": 2, "no_text": 1}


def test_normalize_matches_the_training_reader():
    # Load optical_lightning/data/bitext.py on its own (the package __init__ would import torch).
    path = Path(__file__).resolve().parents[2] / "optical_lightning" / "data" / "bitext.py"
    spec = importlib.util.spec_from_file_location("bitext_standalone", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    for text in ["Ｈｅｌｌｏ  World", "Straße\tnach\nHause", "ﬁle", "  İstanbul "]:
        assert normalize(text) == module.normalize_text(text)


# --- de-duplication and overlap ------------------------------------------------------------------

def test_union_deduplicates_across_sources_first_source_wins():
    a = Bitext("kolibri", "sw", "train",
               [BitextPair("kolibri:1", "Save", "Hifadhi"), BitextPair("kolibri:2", "Cancel", "Ghairi")], "MIT", "t")
    b = Bitext("django", "sw", "train",
               [BitextPair("django:1", "  SAVE ", "hifadhi"), BitextPair("django:2", "Save", "Okoa")], "BSD", "t")
    kept, per_source, duplicates = union([a, b])
    assert [(p.id, p.source) for p in kept] == [("kolibri:1", "kolibri"), ("kolibri:2", "kolibri"),
                                                ("django:2", "django")]
    assert per_source == {"kolibri": 2, "django": 1} and duplicates == 1


def test_overlap_removes_training_pairs_that_match_an_eval_text_after_normalisation():
    evals = [Bitext("flores200-devtest", "sw", "eval", [BitextPair("devtest-1", "He added.", "Aliongeza.")], "CC", "t")]
    texts = eval_texts(evals)
    train = [BitextPair("x:1", "HE  added.", "Aliongezea"),      # en side equal after normalisation
             BitextPair("x:2", "Something else", "Ａｌｉｏｎｇｅｚａ."),  # target equal after NFKC + casefold
             BitextPair("x:3", "He added it.", "Aliiongeza.")]
    kept, removed = remove_overlap(train, texts)
    assert [p.id for p in kept] == ["x:3"] and removed == 2


# --- the pipeline: manifest, atomicity, CLI ------------------------------------------------------

def fake_source(name: str, load) -> SimpleNamespace:
    return SimpleNamespace(NAME=name, LICENCE="test licence", ORIGIN="test origin", load=load)


def _train_source(ctx: SourceContext) -> SourceResult:
    pairs = [BitextPair("t:1", "He added.", "Aliongeza."), BitextPair("t:2", "Good morning", "Habari za asubuhi")]
    return SourceResult("toy", "MIT", "toy 1.0", bitexts=[Bitext("toy", lang, "train", list(pairs), "MIT", "toy")
                                                         for lang in ctx.langs])


def _eval_source(ctx: SourceContext) -> SourceResult:
    return SourceResult("evals", "CC0", "evals 1.0", bitexts=[
        Bitext("toy-test", lang, "eval", [BitextPair("1", "he added.", "Aliongeza")], "CC0", "evals") for lang in ctx.langs])


def _skipped_source(ctx: SourceContext) -> SourceResult:
    raise SourceSkipped("tool not installed")


@pytest.fixture
def toy_sources(monkeypatch):
    registry = {"toy": fake_source("toy", _train_source), "evals": fake_source("evals", _eval_source),
                "gone": fake_source("gone", _skipped_source)}
    monkeypatch.setattr(build_module, "SOURCES", registry)
    return registry


def test_build_writes_files_and_a_complete_manifest_last(tmp_path, toy_sources):
    cfg = BuildConfig(out=tmp_path / "data", cache=tmp_path / "cache", langs=("sw",), sources=tuple(toy_sources))
    manifest = build(cfg, log=lambda line: None)
    on_disk = json.loads((tmp_path / "data/manifest.json").read_text())
    assert on_disk["complete"] is True and on_disk["overlap"]["removed_total"] == 1 == manifest["overlap"]["removed_total"]
    assert on_disk["sources"]["gone"]["status"] == "skipped" and "tool not installed" in on_disk["sources"]["gone"]["reason"]
    assert on_disk["sources"]["toy"]["counts"]["sw"] == {"raw": 2, "cleaned": 2, "overlap_removed": 1, "written": 1}
    assert on_disk["eval"]["translation"]["sw"]["toy-test"]["rows"] == 1
    header, *rows = (tmp_path / "data/bitext/sw/train.tsv").read_text("utf-8").splitlines()
    assert header == "id\ten\tsw\tsource" and rows == ["t:2\tGood morning\tHabari za asubuhi\ttoy"]
    assert read_tsv(tmp_path / "data/eval/translation/sw/toy-test.tsv", ("id", "en", "sw")) == [("1", "he added.", "Aliongeza")]


def test_a_failure_mid_build_leaves_the_earlier_manifest_untouched(tmp_path, toy_sources, monkeypatch):
    out = tmp_path / "data"
    out.mkdir()
    (out / "manifest.json").write_text('{"complete": true}')  # from an earlier, finished run

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_module, "write_retrieval", boom)
    monkeypatch.setattr(build_module, "write_pairs", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build(BuildConfig(out=out, cache=tmp_path / "cache", langs=("sw",), sources=tuple(toy_sources)),
              log=lambda line: None)
    assert (out / "manifest.json").read_text() == '{"complete": true}'  # built aside, never swapped in
    assert not (out / "bitext" / "sw").exists()  # the half-built folder was discarded
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_cli_exits_with_one_line_error_when_nothing_is_built(tmp_path, capsys):
    code = main(["--out", str(tmp_path / "data"), "--offline-only", "--sources", "udhr", "--langs", "so"])
    err = capsys.readouterr().err
    assert code == 1
    assert [ln for ln in err.splitlines() if ln.startswith("error: nothing could be built for so")]
    assert json.loads((tmp_path / "data/manifest.json").read_text())["sources"]["udhr"]["status"] == "skipped"


def test_tsv_writer_refuses_tabs_and_line_breaks():
    assert format_tsv(["id", "en"], [("1", 'say "hi"')]) == 'id\ten\n1\tsay "hi"\n'
    for bad in ("a\tb", "a\nb", "a\u2028b"):
        with pytest.raises(ValueError):
            format_tsv(["id", "en"], [("1", bad)])


# --- downloads (offline behaviour only) ----------------------------------------------------------

def test_offline_fetch_uses_the_cache_or_skips(tmp_path):
    with pytest.raises(SourceSkipped, match="offline-only"):
        pypi_wheel("kolibri", tmp_path, offline=True)
    (tmp_path / "pypi" / "kolibri-0.19.5-py2.py3-none-any.whl").write_bytes(b"")
    assert pypi_wheel("kolibri", tmp_path, offline=True).version == "0.19.5"
    (tmp_path / "debian").mkdir(exist_ok=True)
    (tmp_path / "debian" / "mediawiki_1%3a1.39.17-1+deb12u2_all.deb").write_bytes(b"")
    assert debian_package("mediawiki", tmp_path, offline=True).version == "1:1.39.17-1+deb12u2"


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_unpack_deb_extracts_only_matching_files(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text("Package: toy\nVersion: 1.0\nArchitecture: all\n"
                                        "Maintainer: t <t@example.org>\nDescription: toy\n")
    for rel in ("usr/share/x/i18n/en.json", "usr/share/x/i18n/sw.json", "usr/share/x/i18n/de.json"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text("{}")
    deb = tmp_path / "toy_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(deb)], check=True,
                   capture_output=True)
    root = unpack_deb(deb, ["*/i18n/en.json", "*/i18n/sw.json"])
    assert sorted(p.name for p in root.rglob("*.json")) == ["en.json", "sw.json"]
    assert unpack_deb(deb, ["*/i18n/de.json"]) == root  # cached: not unpacked again


# --- the mirror importer -------------------------------------------------------------------------

MIRROR_FILES = [
    "general/mafand-mt.train.en-sw.tsv", "general/mafand-mt.test.en-sw.tsv", "general/ntrex128.en-sw.tsv",
    "general/ntrex128.en-so.tsv", "general/flores200.devtest.en-so.tsv", "general/tatoeba-test-v2021-08-07.en-sw.tsv",
    "medical/tico19.en-sw.dev.tsv", "medical/tico19.en-sw.test.tsv", "medical/tico19-terminology.en-so.tsv",
    "retrieval/afriqa-sw-en/queries.tsv", "retrieval/afriqa-sw-en/queries.en.tsv",
    "retrieval/afriqa-sw-en/docs.tsv", "retrieval/afriqa-sw-en/qrels.tsv",
    "questions/afriqa.train.en-sw.tsv", "mcqa/afrimmlu/sw.test.jsonl", "mcqa/afrimmlu/en.test.jsonl",
    "mcqa/afrimmlu/sw.val.jsonl", "mcqa/afrimmlu/en.val.jsonl",
]


QUESTIONS = "questions/afriqa.train.en-sw.tsv"


@pytest.fixture
def fake_mirror(tmp_path) -> Path:
    """The mirror's real file names with the header and first 5 real rows of each file."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the shared data mirror) is absent")
    root = tmp_path / "mirror"
    for rel in MIRROR_FILES:
        with (SHARED / rel).open(encoding="utf-8") as f:
            head = [next(f) for _ in range(6)]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("".join(head), encoding="utf-8")
    return root


def test_mirror_importer_assigns_roles_licences_and_ids(fake_mirror, tmp_path):
    result = mirror.load(SourceContext(tmp_path / "cache", ("sw", "so"), True, fake_mirror))
    sets = {(b.name, b.lang): b for b in result.bitexts}
    assert {k for k in sets} == {("mafand-train", "sw"), ("mafand-test", "sw"), ("ntrex128", "sw"),
                                 ("ntrex128", "so"), ("flores200-devtest", "so"), ("tatoeba", "sw"),
                                 ("tico19-dev", "sw"), ("tico19-test", "sw"), ("tico19-terms", "so"),
                                 ("afriqa-questions", "sw"), ("afriqa-questions-dev", "sw")}
    assert sets["ntrex128", "so"].role == "train" and sets["tico19-dev", "sw"].role == "medical"
    assert sets["afriqa-questions", "sw"].role == "questions" and sets["afriqa-questions-dev", "sw"].role == "eval"
    assert {(m.lang, m.split) for m in result.mcqa} == {("sw", "test"), ("en", "test"), ("sw", "val"), ("en", "val")}
    assert sets["tico19-terms", "so"].role == "medical_terms" and sets["tico19-test", "sw"].role == "eval"
    assert "NC" in sets["mafand-test", "sw"].licence
    assert sets["ntrex128", "sw"].pairs[0].id == "ntrex128:ntrex-1"       # training ids are prefixed
    assert sets["tico19-test", "sw"].pairs[0].id == "CMU_1:1"               # eval ids are upstream ids
    first = read_tsv(fake_mirror / "medical/tico19.en-sw.test.tsv", ("id", "en", "sw"))[0]
    assert (sets["tico19-test", "sw"].pairs[0].en, sets["tico19-test", "sw"].pairs[0].tgt) == first[1:]
    [afriqa] = result.retrieval
    assert afriqa.name == "afriqa-sw-en" and len(afriqa.queries) == len(afriqa.queries_en) == 5


def test_build_from_mirror_only(fake_mirror, tmp_path):
    out = tmp_path / "data"
    code = main(["--out", str(out), "--mirror", str(fake_mirror), "--offline-only", "--sources", "mirror"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["bitext"]["sw"]["train.tsv"]["per_source"] == {"mafand-train": 5, "ntrex128": 5}
    assert manifest["bitext"]["so"]["train.tsv"]["pairs"] == 5
    assert manifest["eval"]["translation"]["sw"]["mafand-test"]["licence"].startswith("CC-BY-NC")
    assert (out / "eval/retrieval/afriqa-sw-en/qrels.tsv").read_text() == \
        (fake_mirror / "retrieval/afriqa-sw-en/qrels.tsv").read_text()
    assert (out / "bitext/sw/medical.tsv").is_file() and (out / "bitext/so/medical_terms.tsv").is_file()
    assert not (out / "bitext/sw/tico19-dev.tsv").exists()  # medical data stays out of train.tsv
    # AfriMMLU, parallel by id, one file per language and split; the question bitext and its held-out set
    sw, en = (read_mcqa(out / f"eval/mcqa/afrimmlu/{lang}.test.jsonl") for lang in ("sw", "en"))
    assert [q.id for q in sw] == [q.id for q in en] and len(sw) == 6
    assert manifest["eval"]["mcqa"]["afrimmlu/sw.val"]["licence"].startswith("Apache-2.0 as stated on the dataset card")
    train = read_tsv(out / "bitext/sw/questions.tsv", ("id", "en", "sw"))
    dev = read_tsv(out / "eval/translation/sw/afriqa-questions-dev.tsv", ("id", "en", "sw"))
    assert len(train) + len(dev) == 5 and len(dev) == 2  # at most half of a small file is held out
    assert not {en for _, en, _ in train} & {en for _, en, _ in dev}
    assert manifest["sources"]["mirror"]["sets"]["afriqa-questions-dev"]["sw"]["role"] == "eval"
    assert "bitext/sw/questions.tsv" in manifest["alignment"]["files"]


def test_question_split_is_seeded_order_free_and_disjoint():
    rows = read_tsv(FIXTURES / "questions" / "afriqa.train.en-sw.tsv", ("id", "en", "sw"))
    train, dev = mirror.split_questions(rows)
    assert len(rows) == 415 and len(dev) == 100 and len(train) == 315
    assert not {r[0] for r in train} & {r[0] for r in dev}
    assert mirror.split_questions(rows[::-1])[1] == dev[::-1]  # the file's order does not choose the questions
    grown = mirror.split_questions([*rows, ("swa-train-new", "A new question?", "Swali jipya?")])[1]
    assert len(set(grown) - set(dev)) <= 1  # a new row moves at most one question
    assert mirror.split_questions(rows, seed=1)[1] != dev


def test_overlap_keeps_afrimmlu_and_held_out_questions_out_of_training(fake_mirror, tmp_path):
    question = json.loads((fake_mirror / "mcqa/afrimmlu/en.test.jsonl").read_text().splitlines()[0])["question"]
    questions = fake_mirror / QUESTIONS
    rows = read_tsv(questions, ("id", "en", "sw"))
    twins = [(f"{i}-twin", en.upper(), sw) for i, en, sw in rows]  # every question twice, differing in case only
    questions.write_text(questions.read_text() + "".join("\t".join(r) + "\n" for r in twins))
    train_rows, dev_rows = mirror.split_questions(rows + twins)
    dev_question = dev_rows[0]
    train = fake_mirror / "general/mafand-mt.train.en-sw.tsv"
    train.write_text(train.read_text() + f"leak-1\t{question}\tswali\nleak-2\t{dev_question[1]}\tswali la pili\n")
    out = tmp_path / "data"
    assert main(["--out", str(out), "--mirror", str(fake_mirror), "--offline-only", "--sources", "mirror"]) == 0
    train_texts = {en.lower() for path in (out / "bitext/sw").glob("*.tsv") for _, en, _ in read_tsv(path, ("id", "en", "sw"))}
    dev_texts = {en.lower() for _, en, _ in read_tsv(out / "eval/translation/sw/afriqa-questions-dev.tsv", ("id", "en", "sw"))}
    assert question.lower() not in train_texts and not train_texts & dev_texts
    removed = json.loads((out / "manifest.json").read_text())["overlap"]["removed"]["sw"]
    apart = sum(1 for _, en, _ in train_rows if en.lower() in {d[1].lower() for d in dev_rows})
    assert removed["mafand-train"] == 2 and removed["afriqa-questions"] == apart > 0


def test_afrimmlu_rows_with_a_line_separator_inside_a_text_stay_one_row(tmp_path):
    row = {"id": "x-1", "subject": "s", "question": "Which?\x85 (a) or (b)", "option_a": "a\u2028b", "option_b": "2",
           "option_c": "3", "option_d": "4", "answer": "A"}
    path = tmp_path / "sw.test.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n" + json.dumps({**row, "id": "x-2"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    rows, skipped = mirror.read_mcqa_rows(path)
    assert [r["id"] for r in rows] == ["x-1", "x-2"] and skipped == 0
