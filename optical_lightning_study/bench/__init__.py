"""``make bench``: how fast distillation and evaluation run, against the limits they should reach.

Each figure is a ratio of two measurements taken in the same process on the same machine, so the
targets (``targets.py``) hold whatever the hardware; absolute numbers are reported beside them but
never compared across machines. The parts, in the order the benchmark runs them:

* :mod:`~optical_lightning_study.bench.steps` - one training step per loss (student only, MSE, OPTICAL),
  and with the teacher's token clouds read from the cache instead of computed;
* :mod:`~optical_lightning_study.bench.encoding` - the evaluator's encoding throughput vs a bare
  transformers forward on the same texts;
* :mod:`~optical_lightning_study.bench.ot_scaling` - time and peak memory of the OT head as clouds and
  batches grow;
* :mod:`~optical_lightning_study.bench.default_run` - wall time and peak RSS that ``make run`` recorded.
"""
