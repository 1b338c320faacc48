"""Running a distillation: the LightningModule, the pipeline behind ``run.py``, its callbacks,
optimiser and schedule, run directories and the DDP launch.

Nothing is imported here, so ``run.py`` can parse the command line before the heavy imports; the
pipeline itself is :func:`optical_lightning.training.pipeline.run`.
"""
