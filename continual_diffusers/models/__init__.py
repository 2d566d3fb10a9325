"""Models: the diffusers UNets we build (`build_unet(UNetSpec(...))`), the denoiser around them (`make_denoiser`:
score or energy parameterisation), the conditioning kinds (`models.conditioning`: class / text / slots / none, a
registry of plug-ins) and `ModelSpec`, the typed description of a task model (its continual_diffusers.json).
Latent diffusion's VAE codec lives in `models.latent`; loading an export is `pipelines.load_task_model`."""

from .conditioning import (
    CONDITIONINGS,
    ClassConditioning,
    Conditioning,
    SlotConditioning,
    TextConditioning,
    Unconditional,
    load_text_encoder,
)
from .denoiser import DenoiserOutput, EnergyModel, ScoreModel, make_denoiser
from .slots import SlotEncoder
from .spec import ModelSpec
from .unet import UNetSpec, build_unet, default_channels

__all__ = [
    "CONDITIONINGS",
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
    "ModelSpec",
    "load_text_encoder",
    "make_denoiser",
]
