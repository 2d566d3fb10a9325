"""A training noise schedule read from a file (an export's or a Stable-Diffusion folder's
scheduler/scheduler_config.json), checked when it is loaded instead of failing in the middle of sampling.

The config becomes a `DDPMScheduler` and, through `make_sampling_scheduler`, every sampler of `SCHEDULERS` (diffusers
passes each the keys its constructor takes, including keys DDPM ignores, such as DPM-Solver's `solver_order`):

1. every value: no NaN, infinities only where diffusers' own default is one (`lambda_min_clipped`), integers within
   ±`MAX_SCHEDULE_INT`, short strings and lists (so no key can allocate by its size, whichever sampler reads it);
2. DDPM's keys against the values DDPM *and* every sampler accept (`CHOICES`, `SCHEDULE_BOUNDS`): diffusers checks
   `timestep_spacing` and `variance_type` only inside `set_timesteps` / `step`, and `steps_offset` not at all;
3. every sampler built from the config and its timesteps set (no model is run): what diffusers refuses is refused
   now, in one line naming the sampler.

`check_sampling_timesteps` then checks the one choice known only at sampling time: with "leading" spacing
`steps_offset` shifts the timesteps, and at `num_inference_steps` close to T the last one falls past the schedule.
"""

from __future__ import annotations

import math

from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.logging import quiet_libraries

MAX_SCHEDULE_INT = b.TIMESTEPS.hi
MAX_SCHEDULE_LIST = 64
MAX_SCHEDULE_STRING = 256
INFINITE_DEFAULTS = {"lambda_min_clipped": -math.inf}  # DPM-Solver's default, saved as -Infinity
# The values of DDPM's choice keys that DDPM and every sampler of SCHEDULERS implement: DDPM's "sigmoid" betas are
# DDPM-only; "learned" variances need a UNet that predicts them (ours predict ε, x₀ or v only).
CHOICES = {
    "beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2"),
    "timestep_spacing": ("linspace", "leading", "trailing"),
    "variance_type": ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"),
    "prediction_type": ("epsilon", "sample", "v_prediction"),
}
SCHEDULE_BOUNDS = {
    "num_train_timesteps": b.TIMESTEPS,
    "beta_start": b.OPEN_UNIT,
    "beta_end": b.OPEN_UNIT,
    "clip_sample_range": b.POSITIVE,
    "sample_max_value": b.POSITIVE,
    "dynamic_thresholding_ratio": b.OPEN_UNIT,
}
BOOLEANS = ("clip_sample", "thresholding", "rescale_betas_zero_snr")
DRY_RUN_STEPS = 2


def check_schedule_config(config, where: str) -> None:
    """Refuse (`UserInputError`, naming `where` and the key) a scheduler config that DDPM or a sampler would
    fail on later (the module docstring's rules)."""
    if not isinstance(config, dict):
        raise UserInputError(f"{where}: holds a JSON {type(config).__name__}, not a scheduler config")
    for key, bounds in SCHEDULE_BOUNDS.items():
        if key in config:
            bounds.check(f"{where}: {key}", config[key])
    for key, choices in CHOICES.items():
        if key in config and config[key] not in choices:
            raise UserInputError(f"{where}: {key} must be one of {list(choices)}, got {b.shown(config[key])}")
    for key in BOOLEANS:
        if not isinstance(config.get(key, False), bool):
            raise UserInputError(f"{where}: {key} must be true or false, got {b.shown(config[key])}")
    if config.get("trained_betas") is not None:
        raise UserInputError(f"{where}: trained_betas is not supported (exports never write it)")
    steps = config.get("num_train_timesteps", 1000)
    b.Bounds(int, 0, steps - 1).check(f"{where}: steps_offset", config.get("steps_offset", 0))
    for key, value in config.items():  # after the named keys, whose messages say more
        _check_value(f"{where}: {key}", key, value)
    _dry_run(config, where)


def _check_value(name: str, key: str, value, depth: int = 0) -> None:
    if depth > 2:
        raise UserInputError(f"{name} is nested deeper than a scheduler config's values")
    if isinstance(value, float) and not math.isfinite(value) and value != INFINITE_DEFAULTS.get(key):
        raise UserInputError(f"{name} must be finite, got {value}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SCHEDULE_INT:
        raise UserInputError(f"{name} must be within ±{MAX_SCHEDULE_INT}, got {b.shown(value)}")
    if isinstance(value, str) and len(value) > MAX_SCHEDULE_STRING:
        raise UserInputError(f"{name} is a string of {len(value)} characters, at most {MAX_SCHEDULE_STRING}")
    if isinstance(value, dict):
        raise UserInputError(f"{name} must be a number, string, list or null, got an object")
    if isinstance(value, list):
        if len(value) > MAX_SCHEDULE_LIST:
            raise UserInputError(f"{name} has {len(value)} entries, at most {MAX_SCHEDULE_LIST}")
        for item in value:
            _check_value(name, key, item, depth + 1)


def _dry_run(config: dict, where: str) -> None:
    """Every sampler built from `config`, its timesteps set for a short run (no model involved)."""
    from .ancestral import SCHEDULERS

    steps = min(DRY_RUN_STEPS, config.get("num_train_timesteps", 1000))
    for name in SCHEDULERS:
        try:
            timesteps = _timesteps(name, config, steps)
        except UserInputError:
            raise
        except Exception as err:  # diffusers' own refusal (ValueError, NotImplementedError, ...), as one line
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise UserInputError(f"{where}: the {name} sampler cannot use this schedule ({message[:200]})") from None
        _check_range(timesteps, config, name, steps, where)


def check_sampling_timesteps(name: str, config, num_inference_steps: int, where: str) -> None:
    """The timesteps of sampler `name` at `num_inference_steps` over the training schedule `config` all lie in
    [0, T) (`UserInputError` naming `where` otherwise)."""
    _check_range(_timesteps(name, config, num_inference_steps), config, name, num_inference_steps, where)


def _timesteps(name: str, config, steps: int):
    from .ancestral import make_sampling_scheduler

    with quiet_libraries():
        scheduler = make_sampling_scheduler(name, config)
        scheduler.set_timesteps(steps)
    return scheduler.timesteps


def _check_range(timesteps, config, name: str, steps: int, where: str) -> None:
    total = config.get("num_train_timesteps", 1000)
    values = [float(t) for t in timesteps]
    if not values:
        raise UserInputError(f"{where}: the {name} sampler gives no timesteps for {steps} inference steps")
    outside = next((t for t in values if not (math.isfinite(t) and 0 <= t <= total - 1)), None)
    if outside is not None:
        raise UserInputError(
            f"{where}: with {steps} inference steps the {name} sampler's timesteps reach {outside:g}, outside the "
            f"schedule's 0..{total - 1} (steps_offset={config.get('steps_offset', 0)}, timestep_spacing="
            f"{config.get('timestep_spacing', 'leading')!r}); use fewer --num_inference_steps"
        )
