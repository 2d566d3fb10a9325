from .denoising import (
    TIMESTEP_SAMPLINGS,
    DenoisingObjective,
    LossOutput,
    PredictionType,
    TimestepSampling,
    sample_timesteps,
)

__all__ = [
    "DenoisingObjective",
    "LossOutput",
    "PredictionType",
    "TIMESTEP_SAMPLINGS",
    "TimestepSampling",
    "sample_timesteps",
]
