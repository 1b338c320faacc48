"""`python -m optical_lightning.prepare` into an existing data/: a bad --mirror is a one-line error before
anything is touched, no set an earlier build made is removed without --replace, a build is made aside and
swapped in whole (a failure, Ctrl-C or a killed swap leaves the earlier data/ as it was, the download cache
is moved, not copied), and a crafted .deb cannot write outside its folder.

The sources are small in-process stand-ins registered under real source names (so the real CLI parser
takes them); everything else - the build, the guard, the swap, the CLI, dpkg-deb - is the real code.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from optical_lightning.data.bitext import BitextPair
from optical_lightning.prepare import build as build_module
from optical_lightning.prepare import swap
from optical_lightning.prepare.build import BuildConfig, build
from optical_lightning.prepare.cli import main
from optical_lightning.prepare.fetch import extract_matching, unpack_deb
from optical_lightning.prepare.records import (
    Bitext,
    RetrievalFolder,
    SourceContext,
    SourceResult,
    SourceSkipped,
)
from optical_lightning.utils.errors import ConfigError


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with the bytes of each file (None for a folder)."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f"{out.name}."))


class Toy:
    """Stand-in sources: ``babel`` trains (and "downloads" into the cache), ``udhr`` evaluates (a
    translation set and a retrieval folder), ``mirror`` needs ``--mirror`` like the real one."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.skip: set[str] = set()
        self.interrupt: set[str] = set()
        self.word = "Habari"

    def _start(self, name: str) -> None:
        self.loads.append(name)
        if name in self.interrupt:
            raise KeyboardInterrupt
        if name in self.skip:
            raise SourceSkipped("registry unreachable")

    def babel(self, ctx: SourceContext) -> SourceResult:
        self._start("babel")
        download = ctx.cache / "pypi" / "babel-1.0-py3-none-any.whl"
        if not download.exists():
            download.parent.mkdir(parents=True, exist_ok=True)
            download.write_bytes(b"wheel")
        return SourceResult("babel", "BSD", "babel 1.0", bitexts=[
            Bitext("babel", lang, "train", [BitextPair("b:1", "Hello", self.word), BitextPair("b:2", "Save", "Hifadhi")],
                   "BSD", "b")
            for lang in ctx.langs])

    def udhr(self, ctx: SourceContext) -> SourceResult:
        self._start("udhr")
        return SourceResult("udhr", "CC0", "udhr 1.0", bitexts=[
            Bitext("udhr-test", lang, "eval", [BitextPair("1", "Everyone", "Kila mtu")], "CC0", "u") for lang in ctx.langs],
            retrieval=[RetrievalFolder(f"udhr-{lang}-en", lang, [("q1", "Kila mtu")], [], [("d1", "Everyone")],
                                    [("q1", "d1", 1)], "CC0", "u") for lang in ctx.langs])

    def mirror(self, ctx: SourceContext) -> SourceResult:
        self._start("mirror")
        if ctx.mirror is None or not Path(ctx.mirror).is_dir():
            raise SourceSkipped("no --mirror DIR given" if ctx.mirror is None else f"mirror {ctx.mirror} is not a directory")
        return SourceResult("mirror", "per set", "mirror", bitexts=[
            Bitext("flores200-devtest", lang, "eval", [BitextPair("f1", "He left.", "Aliondoka.")], "CC-BY-SA", "m")
            for lang in ctx.langs])


@pytest.fixture
def toy(monkeypatch) -> Toy:
    sources = Toy()
    registry = {name: SimpleNamespace(NAME=name, LICENCE="test", ORIGIN="test", load=getattr(sources, name))
                for name in ("babel", "udhr", "mirror")}
    monkeypatch.setattr(build_module, "SOURCES", registry)
    return sources


ALL = ("babel", "udhr", "mirror")


def config(tmp_path: Path, **kw) -> BuildConfig:
    out = tmp_path / "data"
    kw = {"langs": ("sw", "so"), "sources": ALL, "mirror": tmp_path / "mirror", "offline": True, **kw}
    return BuildConfig(out=out, cache=out / ".cache", **kw)


@pytest.fixture
def earlier(tmp_path, toy) -> Path:
    """data/ as a full earlier build left it (mirror, both languages, cache inside)."""
    (tmp_path / "mirror").mkdir()
    build(config(tmp_path), log=lambda line: None)
    out = tmp_path / "data"
    assert (out / "eval/translation/sw/flores200-devtest.tsv").is_file() and (out / "bitext/so/train.tsv").is_file()
    toy.loads.clear()
    return out


def cli(tmp_path: Path, *args: str) -> list[str]:
    return ["--out", str(tmp_path / "data"), "--offline-only", "--sources", *ALL, *args]  # a later --sources wins


# --- 1. a mistyped --mirror -----------------------------------------------------------------------

def test_a_missing_mirror_is_one_line_error_before_anything_is_touched(tmp_path, toy, earlier, capsys):
    before = snapshot(earlier)
    (tmp_path / "a-file").write_text("x")
    for bad in (tmp_path / "shard" / "data", tmp_path / "a-file"):
        code = main(cli(tmp_path, "--mirror", str(bad)))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith(f"error: --mirror {bad}:"), err
        assert "leave --mirror out" in err[0]
    assert snapshot(earlier) == before and toy.loads == []  # refused before any source ran


# --- 2. no set an earlier build made is removed without --replace ----------------------------------

def test_a_narrower_build_is_refused_naming_the_sets_and_replace_allows_it(tmp_path, toy, earlier, capsys):
    before = snapshot(earlier)
    code = main(cli(tmp_path, "--sources", "babel", "--langs", "sw", "--mirror", str(tmp_path / "mirror")))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --out "), err
    # every set of so and the udhr and mirror sets of sw: 8 (evaluation sets named first), and the ways out
    assert "would remove 8 set(s)" in err[0] and "eval/retrieval/udhr-so-en" in err[0] and "4 more" in err[0]
    assert "--langs sw so" in err[0] and "--sources babel udhr mirror" in err[0] and "--replace" in err[0]
    assert snapshot(earlier) == before and toy.loads == []  # predicted from the manifest: nothing downloaded

    assert main(cli(tmp_path, "--sources", "babel", "--langs", "sw", "--replace")) == 0
    assert sorted(p.relative_to(earlier).as_posix() for p in earlier.rglob("*.tsv")) == [
        "bitext/sw/babel.tsv", "bitext/sw/train.tsv"]
    assert json.loads((earlier / "manifest.json").read_text())["config"]["replace"] is True


def test_rebuilding_the_same_sets_or_adding_sets_needs_no_replace(tmp_path, toy):
    (tmp_path / "mirror").mkdir()
    build(config(tmp_path, sources=("babel",)), log=lambda line: None)
    build(config(tmp_path, sources=("babel", "udhr")), log=lambda line: None)  # adds sets
    build(config(tmp_path, sources=("babel", "udhr")), log=lambda line: None)  # the same again
    assert (tmp_path / "data/eval/retrieval/udhr-so-en/qrels.tsv").is_file()


def test_a_source_that_is_skipped_today_is_refused_on_the_finished_tree(tmp_path, toy, earlier):
    before = snapshot(earlier)
    toy.skip.add("udhr")  # same settings, but the registry is unreachable today
    with pytest.raises(ConfigError, match=r"would remove 4 set\(s\).*rebuild once the sources that made them"):
        build(config(tmp_path), log=lambda line: None)
    assert toy.loads == list(ALL)  # found after loading: the manifest could not predict it
    assert snapshot(earlier) == before and siblings(earlier) == []


# --- 3. built aside, swapped in whole --------------------------------------------------------------

def test_ctrl_c_mid_build_leaves_the_earlier_data_exactly_as_it_was(tmp_path, toy, earlier, capsys):
    before = snapshot(earlier)
    toy.interrupt.add("mirror")
    toy.word = "Jambo"  # babel has new content, already written when Ctrl-C comes
    assert main(cli(tmp_path, "--mirror", str(tmp_path / "mirror"))) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: interrupted;")
    assert snapshot(earlier) == before and siblings(earlier) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_rebuild_is_swapped_in_whole_keeping_the_cache_and_user_files_by_rename(tmp_path, toy, earlier,
                                                                                   monkeypatch, exchange):
    if not exchange:  # as on a system without renameat2(RENAME_EXCHANGE)
        monkeypatch.setattr(swap, "_exchange", lambda a, b: False)
    cached = earlier / ".cache/pypi/babel-1.0-py3-none-any.whl"
    inode = cached.stat().st_ino
    (earlier / "notes.txt").write_text("mine")
    (earlier / "eval/README.md").write_text("also mine")
    toy.word = "Jambo"
    build(config(tmp_path), log=lambda line: None)
    assert "Jambo" in (earlier / "bitext/sw/train.tsv").read_text() and toy.loads == list(ALL)
    assert cached.stat().st_ino == inode  # the cache was moved into the new tree, not copied or fetched again
    assert (earlier / "notes.txt").read_text() == "mine" and (earlier / "eval/README.md").read_text() == "also mine"
    assert siblings(earlier) == []


def test_the_next_build_puts_right_what_a_killed_swap_left(tmp_path, toy, earlier):
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # its pid names the siblings of a process that no longer runs
    before = snapshot(earlier)
    # killed between the two renames: no data/, the earlier tree as data.old-*, the new one as data.tmp-*
    old = earlier.rename(tmp_path / f"data.old-{gone.pid}-ab")
    shutil.copytree(old, tmp_path / f"data.tmp-{gone.pid}-cd", ignore=shutil.ignore_patterns(".cache"))
    busy = (tmp_path / f"data.tmp-{os.getpid()}-ef")
    busy.mkdir()  # a build that is still running (this process): left alone
    lines: list[str] = []
    swap.recover(earlier, lines.append)
    assert snapshot(earlier) == before and siblings(earlier) == [busy.name]
    assert any("restored" in line for line in lines)
    busy.rmdir()

    # killed after the exchange: data/ is the new tree, the earlier one (with the cache) as data.tmp-*
    stale = tmp_path / f"data.tmp-{gone.pid}-gh"
    shutil.copytree(earlier, stale)
    shutil.rmtree(earlier / ".cache")
    (earlier / "bitext/sw/train.tsv").write_text("new\n")
    build(config(tmp_path), log=lines.append)  # recovers first, then builds (the cache is there again)
    assert siblings(earlier) == [] and (earlier / ".cache/pypi/babel-1.0-py3-none-any.whl").read_bytes() == b"wheel"
    assert any("moved its .cache" in line for line in lines)


# --- 4. crafted packages ----------------------------------------------------------------------------

def tar_bytes(members: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """A tar of (name, data, link target): a file when data is given, else a symlink (or hard link if the
    target starts with ``hard:``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.LNKTYPE if link.startswith("hard:") else tarfile.SYMTYPE
                info.linkname = link.removeprefix("hard:")
                tar.addfile(info)
    return buf.getvalue()


def test_extraction_refuses_absolute_and_dotdot_paths_and_never_makes_links(tmp_path):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    ok = ("./usr/share/x/i18n/en.json", b"{}", None)
    for evil in (f"{outside}/i18n/sw.json", f"/{outside}/i18n/sw.json", "./usr/../../outside/i18n/sw.json"):
        with tarfile.open(fileobj=io.BytesIO(tar_bytes([ok, (evil, b"pwned", None)]))) as tar, \
                pytest.raises(SourceSkipped, match="unsafe path"):
            extract_matching(tar, ["*/i18n/*.json"], dest, "evil.deb")
        assert not outside.exists()
    links = [ok, ("./usr/share/x/i18n/sw.json", None, "/etc/passwd"),
             ("./usr/share/x/i18n/so.json", None, "hard:usr/share/x/i18n/en.json")]
    shutil.rmtree(dest)
    dest.mkdir()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(links))) as tar:
        extract_matching(tar, ["*/i18n/*.json"], dest, "links.deb")
    assert [p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir()] == ["usr/share/x/i18n/en.json"]


def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    """A Debian package is an ar archive: debian-binary, control.tar.*, data.tar.*."""
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_unpack_deb_refuses_a_package_with_an_absolute_member(tmp_path):
    outside = tmp_path / "outside"
    control = tar_bytes([("./control", b"Package: evil\nVersion: 1.0\nArchitecture: all\n"
                          b"Maintainer: t <t@example.org>\nDescription: evil\n", None)])
    data = tar_bytes([("./usr/share/x/i18n/en.json", b"{}", None), (f"{outside}/i18n/sw.json", b"pwned", None)])
    deb = tmp_path / "evil_1.0_all.deb"
    deb.write_bytes(ar_archive([("debian-binary", b"2.0\n"), ("control.tar", control), ("data.tar", data)]))
    with pytest.raises(SourceSkipped, match="unsafe path"):
        unpack_deb(deb, ["*/i18n/*.json"])
    assert not outside.exists() and not deb.with_name(deb.name + ".files").exists()
