"""Objectives: the denoising loss (ε / x₀ / v targets, min-SNR-γ weighting, timestep sampling) shared by score and
energy models; `objective(model, x0, cond, generator) -> LossOutput` with per-sample losses (B,)."""

from .denoising import (
    TIMESTEP_SAMPLINGS,
    DenoisingObjective,
    LossOutput,
    PredictionType,
    TimestepSampling,
    default_prediction_type,
    sample_timesteps,
)

__all__ = [
    "DenoisingObjective",
    "LossOutput",
    "PredictionType",
    "TIMESTEP_SAMPLINGS",
    "TimestepSampling",
    "default_prediction_type",
    "sample_timesteps",
]
