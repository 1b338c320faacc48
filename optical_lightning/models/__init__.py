"""Teacher and student encoders."""

from optical_lightning.models.checks import check_finite
from optical_lightning.models.encoder import Encoder, EncoderOutput
from optical_lightning.models.loading import load_encoder

__all__ = ["Encoder", "EncoderOutput", "check_finite", "load_encoder"]
