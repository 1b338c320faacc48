"""Read gettext catalogues (``.po`` text and ``.mo`` binary) into English -> translation pairs.

Django ships ``.po`` files and WordPress compiled ``.mo`` files. :func:`read_po` uses
``babel.messages.pofile`` when Babel is importable and otherwise :func:`parse_po`, a small parser
of the same format (tests check both agree); :func:`parse_mo` reads the documented binary layout
with :mod:`struct`, so neither needs anything installed. :func:`message_pairs` then decides which
entries count as translations: the header, fuzzy and untranslated entries are skipped; a plural
entry gives ``msgid -> msgstr[0]`` and ``msgid_plural -> msgstr[-1]``.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_ESCAPE = re.compile(r"\\(.)")
_KEYWORD = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")\s*$')


@dataclass(frozen=True)
class Message:
    """One catalogue entry; ``msgstrs`` has one form, or one per plural form."""

    msgid: str
    msgstrs: tuple[str, ...]
    msgid_plural: str = ""
    context: str = ""
    fuzzy: bool = False

    @property
    def key(self) -> str:
        """A short stable id (hash of context + msgid): gettext entries have no other key."""
        return hashlib.sha1(f"{self.context}\x04{self.msgid}".encode()).hexdigest()[:10]


def _unquote(token: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[1:-1])


def parse_po(text: str) -> list[Message]:
    """Parse ``.po`` text: ``msgctxt``/``msgid``/``msgid_plural``/``msgstr[n]`` with continuation
    lines, ``#, fuzzy`` flags; the header and obsolete ``#~`` entries are left out."""
    messages: list[Message] = []
    entry: dict[str, str] = {}
    forms: dict[int, str] = {}
    fuzzy = False
    field = ""

    def flush() -> None:
        nonlocal entry, forms, fuzzy, field
        if entry.get("msgid"):  # the header entry (empty msgid) is metadata, as in Babel
            strs = tuple(forms[i] for i in sorted(forms)) if forms else (entry.get("msgstr", ""),)
            messages.append(Message(entry["msgid"], strs, entry.get("msgid_plural", ""),
                                    entry.get("msgctxt", ""), fuzzy))
        entry, forms, fuzzy, field = {}, {}, False, ""

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if "msgid" in entry and field.startswith("msgstr"):
                flush()
            if line.startswith("#,") and "fuzzy" in {f.strip() for f in line[2:].split(",")}:
                fuzzy = True
            continue
        m = _KEYWORD.match(line)
        if m:
            keyword, index, token = m.group(1), m.group(2), m.group(3)
            if keyword in {"msgctxt", "msgid"} and field.startswith("msgstr"):
                flush()
            field = keyword
            if index is not None:
                forms[int(index)] = _unquote(token)
            else:
                entry[keyword] = _unquote(token)
        elif line.startswith('"') and field:
            if field.startswith("msgstr["):
                i = int(field[7:-1])
                forms[i] += _unquote(line)
            else:
                entry[field] = entry.get(field, "") + _unquote(line)
    flush()
    return messages


def read_po(text: str) -> list[Message]:
    """Parse ``.po`` text with Babel if it is importable, else with :func:`parse_po`."""
    try:
        from babel.messages.pofile import read_po as babel_read_po
    except ImportError:
        return parse_po(text)
    catalog = babel_read_po(io.StringIO(text), abort_invalid=False)
    out = []
    for m in catalog:
        if not m.id:
            continue
        if isinstance(m.id, tuple | list):
            strs = tuple(m.string) if isinstance(m.string, tuple | list) else (m.string,)
            out.append(Message(m.id[0], tuple(s or "" for s in strs), m.id[1], m.context or "", m.fuzzy))
        else:
            out.append(Message(m.id, (m.string or "",), "", m.context or "", m.fuzzy))
    return out


def parse_mo(data: bytes) -> list[Message]:
    """Parse a compiled ``.mo`` catalogue (either byte order); the charset comes from its header."""
    magic = data[:4]
    if magic == b"\xde\x12\x04\x95":
        order = "<"
    elif magic == b"\x95\x04\x12\xde":
        order = ">"
    else:
        raise ValueError("not a gettext .mo file (bad magic number)")
    _, count, orig_table, trans_table = struct.unpack(order + "4I", data[4:20])
    raw: list[tuple[bytes, bytes]] = []
    for i in range(count):
        olen, ooff = struct.unpack(order + "2I", data[orig_table + 8 * i : orig_table + 8 * i + 8])
        tlen, toff = struct.unpack(order + "2I", data[trans_table + 8 * i : trans_table + 8 * i + 8])
        raw.append((data[ooff : ooff + olen], data[toff : toff + tlen]))
    charset = "utf-8"
    for msgid, msgstr in raw:
        if msgid == b"":
            m = re.search(rb"charset=([\w.-]+)", msgstr)
            if m:
                charset = m.group(1).decode("ascii")
    messages = []
    for msgid, msgstr in raw:
        if msgid == b"":
            continue
        mid, strs = msgid.decode(charset), msgstr.decode(charset).split("\x00")
        context, _, mid = mid.rpartition("\x04")
        singular, _, plural = mid.partition("\x00")
        messages.append(Message(singular, tuple(strs), plural, context))
    return messages


def message_pairs(messages: Iterable[Message]) -> Iterator[tuple[str, str, str]]:
    """``(key, english, translation)`` for every translated, non-fuzzy entry (see module doc)."""
    for m in messages:
        if not m.msgid or m.fuzzy:
            continue
        if m.msgid_plural:
            if m.msgstrs and m.msgstrs[0]:
                yield m.key, m.msgid, m.msgstrs[0]
            if len(m.msgstrs) > 1 and m.msgstrs[-1]:
                yield f"{m.key}.plural", m.msgid_plural, m.msgstrs[-1]
        elif m.msgstrs and m.msgstrs[0]:
            yield m.key, m.msgid, m.msgstrs[0]
