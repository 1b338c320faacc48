"""Teacher and student encoders."""

from optical_lightning.models.encoder import Encoder, EncoderOutput, load_encoder

__all__ = ["Encoder", "EncoderOutput", "load_encoder"]
