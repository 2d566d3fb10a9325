"""Optimizer, learning-rate schedule and EMA construction."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers.optimization import get_scheduler

from ..utils.errors import UserInputError
from .train_config import TrainConfig

if TYPE_CHECKING:
    from diffusers.training_utils import EMAModel


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (bitsandbytes AdamW8bit with --use_8bit_adam)."""
    params = [p for p in params if p.requires_grad]
    kwargs = dict(
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.adam_weight_decay,
        eps=cfg.adam_epsilon,
    )
    if not cfg.use_8bit_adam:
        return torch.optim.AdamW(params, **kwargs)
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise UserInputError("--use_8bit_adam needs bitsandbytes: pip install '.[bnb]'") from err
    return bnb.optim.AdamW8bit(params, **kwargs)


def build_lr_schedule(optimizer, cfg: TrainConfig, num_optimizer_steps: int):
    """diffusers schedule whose length is the task's number of *optimizer* steps (after sharding and gradient
    accumulation). It is stepped once per optimizer step and never handed to accelerate, which would step it
    once per process."""
    return get_scheduler(
        cfg.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=min(cfg.lr_warmup_steps, num_optimizer_steps),
        num_training_steps=num_optimizer_steps,
    )


def build_ema(unet, cfg: TrainConfig, parameters=None) -> EMAModel | None:
    """EMA with warm-up: decay(s) = min(1 − (1 + s/inv_gamma)^−power, max_decay) (diffusers EMAModel).

    `parameters`: what to average (default: the UNet's); slot models pass the UNet's and the slot encoder's."""
    if not cfg.use_ema:
        return None
    # Imported here: diffusers.training_utils imports every diffusers autoencoder and its pipeline loaders (≈0.3 s
    # and tens of MB), which a run without EMA never uses.
    from diffusers.training_utils import EMAModel

    return EMAModel(
        unet.parameters() if parameters is None else parameters,
        decay=cfg.ema_max_decay,
        use_ema_warmup=True,
        inv_gamma=cfg.ema_inv_gamma,
        power=cfg.ema_power,
        model_cls=type(unet),
        model_config=unet.config,
    )
