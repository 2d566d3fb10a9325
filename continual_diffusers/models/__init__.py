"""Models: the diffusers UNets we build (`build_unet(UNetSpec(...))`), the denoiser around them (`make_denoiser`:
score or energy parameterisation), the conditionings (class / text / slots / none) and loading an exported task
model (`load_task_model`). Latent diffusion's VAE/text-encoder components live in `models.latent`."""

from .conditioning import (
    ClassConditioning,
    Conditioning,
    SlotConditioning,
    TextConditioning,
    Unconditional,
    load_text_encoder,
)
from .denoiser import DenoiserOutput, EnergyModel, ScoreModel, make_denoiser
from .loading import load_decode_fn, load_task_model, read_metadata
from .slots import SlotEncoder
from .unet import UNetSpec, build_unet, default_channels

__all__ = [
    "ClassConditioning",
    "Conditioning",
    "DenoiserOutput",
    "EnergyModel",
    "ScoreModel",
    "SlotConditioning",
    "SlotEncoder",
    "TextConditioning",
    "UNetSpec",
    "Unconditional",
    "build_unet",
    "default_channels",
    "load_decode_fn",
    "load_task_model",
    "load_text_encoder",
    "make_denoiser",
    "read_metadata",
]
