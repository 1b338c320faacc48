"""optical-lightning: OPTICAL optimal-transport distillation for cross-lingual retrieval.

The package reads in the order data flows:
``data`` (bitext) -> ``models`` (teacher/student encoders) -> ``losses`` (OT and MSE heads)
-> ``module`` (LightningModule) -> ``train`` (the Hydra-driven pipeline and its results).
"""

from optical_lightning.errors import ConfigError, DataError, ModelLoadError, OpticalError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "ModelLoadError", "OpticalError", "__version__"]
