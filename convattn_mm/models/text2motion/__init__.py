"""Text-to-motion: text encoders, the δ-attention denoiser, the diffusion
model and its data preprocessor."""
from .denoiser import MotionDenoiser
from .text_encoders import CLIPTextEncoder, HashedWordEncoder
from .text_to_motion import MotionDataPreprocessor, TextToMotion

__all__ = [
    'MotionDenoiser', 'CLIPTextEncoder', 'HashedWordEncoder',
    'MotionDataPreprocessor', 'TextToMotion'
]
