from .denoising import DenoisingObjective, LossOutput, PredictionType

__all__ = ["DenoisingObjective", "LossOutput", "PredictionType"]
