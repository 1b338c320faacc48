"""optical-lightning: OPTICAL optimal-transport distillation for cross-lingual retrieval.

The package reads in the order data flows (README, *Code map*): ``prepare`` (builds ``data/``) ->
``data`` (bitext, batches) -> ``models`` (teacher/student encoders) -> ``losses`` (OT and MSE heads)
-> ``training`` (LightningModule and the Hydra-driven pipeline) -> ``evaluation`` -> ``search``
-> ``reporting``, with ``utils`` beneath all of them. The study around it (report, sweeps, significance,
benchmarks) is ``optical_lightning_study``, which imports this package, never the reverse.
"""

from optical_lightning.utils.errors import ConfigError, DataError, ModelLoadError, OpticalError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "ModelLoadError", "OpticalError", "__version__"]
