"""The study around the library: what `make report`, `make bench` and ``experiments/*.py`` run.

* :mod:`~optical_lightning_study.report` - the study report: job records -> tables, plots, REPORT.md;
* :mod:`~optical_lightning_study.sweeps` - one table and plots per multirun folder (``experiments/summarize.py``);
* :mod:`~optical_lightning_study.significance` - bootstrap intervals and paired randomisation tests;
* :mod:`~optical_lightning_study.ceilings` - ceilings and role pairings (``experiments/ceilings.py``);
* :mod:`~optical_lightning_study.drift` - which weights training moves (``experiments/what_moves.py``);
* :mod:`~optical_lightning_study.bench` - timing of steps, encoding and the OT head (``make bench``).

It is kept apart so that ``optical_lightning`` holds only what a user imports to prepare data, train,
evaluate and search. The study imports the library, never the reverse (``tests/test_package_layout.py``).
"""
