"""Language codes the project knows how to read bitext for.

Codes are ISO 639-1 where one exists (``sw``, ``so``) because that is what the bitext column
headers use. ``conf/lang/<code>.yaml`` is the place a user adds a language; this table only
guards against typos such as ``lang.code=swa`` that would otherwise fail deep inside data loading.
"""

from __future__ import annotations

from optical_lightning.utils.errors import ConfigError

#: code -> (English name, ISO 639-3 codes that mean the same language in other datasets)
LANGUAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "en": ("English", ("eng",)),
    "sw": ("Swahili", ("swh", "swa")),
    "so": ("Somali", ("som",)),
    "ha": ("Hausa", ("hau",)),
    "yo": ("Yoruba", ("yor",)),
    "ig": ("Igbo", ("ibo",)),
    "zu": ("Zulu", ("zul",)),
    "rw": ("Kinyarwanda", ("kin",)),
    "am": ("Amharic", ("amh",)),
    "fa": ("Persian", ("fas", "pes")),
    "ru": ("Russian", ("rus",)),
    "zh": ("Chinese", ("zho", "cmn")),
}


def check_language(code: str) -> str:
    """Return ``code`` if it names a known non-English language, else raise a one-line error."""
    if code in LANGUAGES and code != "en":
        return code
    for known, (_, aliases) in LANGUAGES.items():
        if code in aliases and known != "en":
            raise ConfigError(f"unknown language code '{code}': use the ISO 639-1 code '{known}' (lang={known})")
    known = ", ".join(sorted(c for c in LANGUAGES if c != "en"))
    raise ConfigError(
        f"unknown language code '{code}': known codes are {known}; "
        f"add it to optical_lightning/utils/languages.py and conf/lang/{code}.yaml to support a new language"
    )
