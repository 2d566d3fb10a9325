"""Generative replay and generative distillation for diffusion models.

Before task k (k ≥ 2) a frozen copy of the current model becomes the *teacher*. During task k, replay samples are
drawn from the teacher with a fast sampler (`sampling.ancestral.DEFAULT_SCHEDULER` at 10 steps by default), with
labels drawn uniformly from the classes seen so far (class models), from the captions seen so far (text models) or
none (unconditional models), either on the fly or from a pool generated once per task.

- Generative replay (Shin et al. 2017; CLoG "GR"): the replayed images join the batch and are trained on with the
  ordinary denoising loss (weight `loss_weight`).
- Generative distillation (Masip et al. 2023, arXiv 2311.14028): the replayed images are re-noised at random t by
  the objective as usual, but the student regresses the teacher's prediction on that same noisy input instead of
  the target of the sampled noise. The replay rows' loss is the main loss with the teacher as the target: in the
  objective's parameterisation f (ε, x₀ or v, v by default) and with its per-timestep weight w(t)
  (`DenoisingObjective.weights`: 1 for ε and v, min-SNR-γ when set), so for a batch of B rows

      loss = (1/B)·[Σ_real w(t)·‖f_θ(x_t) − f*‖² + λ·Σ_replay w(t)·‖f_θ(x_t) − f_teacher(x_t)‖²]

  (‖·‖²: the mean over pixels; f*: the objective's target), and λ = `distillation_weight` weighs distillation
  against the main loss. For ε-prediction without min-SNR this is Masip et al.'s MSE(ε_student, ε_teacher) with
  their λ = 3 (teacher sampling with 2-step DDIM); energy models distil ε̂ = ∇ₓE. In another parameterisation a
  student's ε error Δε costs what the main loss charges it: ‖Δv‖² = ‖Δε‖²/ᾱ_t for v, and under min-SNR-γ all three
  parameterisations charge min(1, γ/SNR_t)·‖Δε‖². Implemented as a `penalty` on the replay rows (whose own
  noise-regression loss gets weight 0); the trainer averages the real loss over the whole batch and the penalty is
  divided by the same B.

Variants (`distillation_inputs`, all with λ > 0; Masip et al. compare them):

- "generated" (default): the teacher's own samples, as above.
- "noise" ("Gaussian distillation"): the replay rows are x₀ ~ N(0, I) instead of samples. The objective re-noises
  them as usual, x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, which is again exactly N(0, I) at every t, so the student matches
  the teacher on pure-noise inputs. No sampling at all: one teacher forward per replay row.
- "buffer": no replay rows of its own; the teacher is distilled on the rows that buffer replay (`--buffer_type`)
  adds to the batch, which keep their ordinary noise-regression loss as well.

Teacher (`teacher`): "model" copies the training weights at the start of the task (Masip et al.); "ema" copies the
EMA weights (the ones exported and evaluated), which needs the trainer's EMA (`apply_ema`).

Cost: every replayed image costs `num_inference_steps` teacher forward passes (plus one per step for distillation);
`log_values()` reports the running totals so they can be logged and traded off.

Resume: the teacher's weights are part of `state_dict`, so a run resumed in the middle of task k rebuilds exactly
the same teacher (and, being seeded, the same pool and replays).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..objectives import LossOutput
from ..sampling.ancestral import DEFAULT_SCHEDULER, SCHEDULERS
from ..sampling.generate import SamplerOptions, generate_samples
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.options import option, options_group
from .base import ContinualStrategy, TaskContext
from .context import StrategyConfig, StrategyContext

MAX_STORED_PROMPTS = 10_000
TEACHERS = ("model", "ema")
DISTILLATION_INPUTS = ("generated", "noise", "buffer")


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _keep_latents(latents: torch.Tensor) -> torch.Tensor:
    """A 'decoder' that returns the sampled latents as they are (generation then skips the pixel-range clamp)."""
    return latents


@options_group(
    "Generative replay", "replay sampled from a frozen copy of the model (distillation: --distillation_weight)"
)
@dataclass
class GenerativeReplayConfig(StrategyConfig):
    name = "generative_replay"

    gr_num_inference_steps: int = option(
        10, bounds=b.TIMESTEPS, help="teacher sampling steps per replayed image (Masip et al.: 2)"
    )
    gr_scheduler: str = option(DEFAULT_SCHEDULER, choices=sorted(SCHEDULERS), help="teacher sampler")
    gr_pool_size: int = option(
        0,
        bounds=b.POOL_SIZE,
        help="0: sample replays on the fly every step; N: sample N per task once and draw from them",
    )
    gr_replay_ratio: float = option(0.5, bounds=b.OPEN_UNIT, help="replay fraction of every batch, in (0, 1)")
    gr_loss_weight: float = option(
        1.0, bounds=b.NON_NEGATIVE, help="weight of the replays' denoising loss (plain generative replay)"
    )
    distillation_weight: float = option(
        0.0, bounds=b.NON_NEGATIVE,
        help="λ > 0: generative distillation: on replays the student regresses the teacher's prediction with the "
        "main loss (its parameterisation, ε / x₀ / v, and its per-timestep weight, e.g. min-SNR), times λ "
        "(Masip et al. 2023: 3.0, with ε-prediction)",
    )  # fmt: skip
    distillation_inputs: str = option(
        "generated", choices=DISTILLATION_INPUTS,
        help="what the teacher is distilled on: generated (its samples), noise (x ~ N(0, I), no sampling: "
        "cheapest) or buffer (the images buffer replay adds; needs --buffer_type)",
    )  # fmt: skip
    gr_teacher: str = option(
        "model", choices=TEACHERS,
        help="the teacher's weights: the model's at the start of the task, or its EMA (needs --use_ema)",
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        inputs = self.distillation_inputs
        if inputs != "generated" and self.distillation_weight == 0:
            raise UserInputError(f"--distillation_inputs {inputs} needs --distillation_weight > 0")
        if inputs != "generated" and self.gr_pool_size:
            raise UserInputError(
                f"--gr_pool_size has no effect with --distillation_inputs {inputs} (nothing is sampled)"
            )

    def check(self, context: StrategyContext) -> None:
        replay = context.enabled.get("replay")
        if self.distillation_inputs == "buffer" and getattr(replay, "buffer_type", None) in ("no_data", None):
            raise UserInputError(
                "--distillation_inputs buffer distils on buffer replays: add --buffer_type (not no_data)"
            )
        if self.gr_teacher == "ema" and not context.use_ema:
            raise UserInputError("--gr_teacher ema needs --use_ema (there are no EMA weights otherwise)")

    def build(self, context: StrategyContext) -> GenerativeReplay:
        if context.conditioning is None or context.train_scheduler is None:
            raise UserInputError("generative replay is not available from this entry point")
        num_train_timesteps = context.train_scheduler.config.num_train_timesteps
        if self.gr_num_inference_steps > num_train_timesteps:
            raise UserInputError(
                f"--gr_num_inference_steps {self.gr_num_inference_steps} exceeds the schedule's "
                f"{num_train_timesteps} training timesteps"
            )
        return GenerativeReplay(
            context.conditioning, context.train_scheduler, seed=context.seed, replay_ratio=self.gr_replay_ratio,
            loss_weight=self.gr_loss_weight, distillation_weight=self.distillation_weight,
            num_inference_steps=self.gr_num_inference_steps, scheduler=self.gr_scheduler,
            guidance_scale=context.guidance_scale, pool_size=self.gr_pool_size, latent=context.latent,
            teacher=self.gr_teacher, distillation_inputs=self.distillation_inputs,
        )  # fmt: skip


class GenerativeReplay(ContinualStrategy):
    """Replay from a frozen teacher; `distillation_weight > 0` turns it into generative distillation.

    Args:
        conditioning: the run's conditioning (labels → UNet kwargs, null condition for CFG).
        train_scheduler: the training noise schedule (the fast sampler shares it).
        seed: run seed (pool generation).
        replay_ratio: replay fraction of each combined batch, in (0, 1): B·r/(1−r) replays per B current samples.
        loss_weight: weight of the replays' noise-regression loss (generative replay). Ignored (0) when distilling.
        distillation_weight: λ of the distillation term; 0 = plain generative replay.
        num_inference_steps: teacher sampling steps.
        scheduler: teacher sampling scheduler (a key of `sampling.ancestral.SCHEDULERS`).
        guidance_scale: CFG scale for teacher sampling (models trained with CFG only).
        pool_size: 0 → generate replays on the fly every step; N > 0 → generate N once per task and draw from it.
        latent: the model works on VAE latents: replays stay latents (not clamped to [-1, 1], not decoded).
        teacher: "model" (training weights) or "ema" (EMA weights; `before_task` must then get `apply_ema`).
        distillation_inputs: "generated", "noise" or "buffer" (see the module docstring); the last two need λ > 0.
    """

    name = "generative_replay"
    config = GenerativeReplayConfig

    def __init__(
        self,
        conditioning,
        train_scheduler,
        seed: int = 0,
        replay_ratio: float = 0.5,
        loss_weight: float = 1.0,
        distillation_weight: float = 0.0,
        num_inference_steps: int = 10,
        scheduler: str = DEFAULT_SCHEDULER,
        guidance_scale: float = 1.0,
        pool_size: int = 0,
        latent: bool = False,
        teacher: str = "model",
        distillation_inputs: str = "generated",
    ):
        b.OPEN_UNIT.check("replay_ratio", replay_ratio)  # the bounds of the flags (GenerativeReplayConfig)
        for name, value in {"distillation_weight": distillation_weight, "loss_weight": loss_weight}.items():
            b.NON_NEGATIVE.check(name, value)
        b.POOL_SIZE.check("pool_size", pool_size)
        b.TIMESTEPS.check("num_inference_steps", num_inference_steps)
        if teacher not in TEACHERS or distillation_inputs not in DISTILLATION_INPUTS:
            raise ValueError(f"teacher must be one of {TEACHERS} and distillation_inputs one of {DISTILLATION_INPUTS}")
        if distillation_inputs != "generated" and distillation_weight == 0:
            raise ValueError(f"distillation_inputs={distillation_inputs!r} needs distillation_weight > 0")
        self.teacher_source = teacher
        self.distillation_inputs = distillation_inputs
        self.conditioning = conditioning
        self.train_scheduler = train_scheduler
        self.seed = seed
        self.replay_ratio = replay_ratio
        self.loss_weight = 0.0 if distillation_weight > 0 else loss_weight
        self.distillation_weight = distillation_weight
        # No bars for on-the-fly replays (every training step, under the trainer's bar); the pool gets one.
        self.options = SamplerOptions(scheduler, num_inference_steps, guidance_scale, batch_size=256, progress=False)
        self.pool_size = pool_size
        self.decode_fn = _keep_latents if latent else None
        self.past_labels: list = []  # class ids or prompts seen in finished tasks
        self.teacher: nn.Module | None = None
        self.teacher_task: int | None = None
        self._loaded_teacher: dict[str, torch.Tensor] | None = None
        self._pool: tuple[torch.Tensor, list] | None = None
        self._sample_shape: tuple[int, ...] | None = None  # (C, H, W) of the model's input, for noise inputs
        self._last_replay: int | None = None  # number of replay rows this strategy added to the last batch
        self._seen = False  # has any task finished?
        self.teacher_forwards = 0
        self.teacher_seconds = 0.0

    # -------------------------------------------------------------------------------------------------- hooks
    def before_task(self, model: nn.Module, task_id: int, apply_ema=None) -> None:
        self.teacher, self._pool = None, None  # free the previous task's teacher first
        if not self._seen:  # no finished task yet: nothing to replay
            return
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        if self._loaded_teacher is not None and self.teacher_task == task_id:
            teacher.load_state_dict(self._loaded_teacher)  # resumed mid-task: the teacher of this task
        elif self.teacher_source == "ema":
            if apply_ema is None:
                raise ValueError("an EMA teacher needs the trainer's EMA weights (train with --use_ema)")
            apply_ema(teacher)
        self._loaded_teacher = None
        self.teacher, self.teacher_task = teacher, task_id
        config = model.unet.config
        self._sample_shape = (config.in_channels, *_pair(config.sample_size))
        if self.pool_size and self.distillation_inputs == "generated":
            generator = torch.Generator().manual_seed(self.seed + 7919 * task_id)
            self._pool = self._generate(self.pool_size, generator, desc=f"replay pool (task {task_id})")

    def replay_batch(self, batch_size: int, generator: torch.Generator) -> dict | None:
        if self.teacher is None or self.distillation_inputs == "buffer":
            return None
        num = max(1, round(batch_size * self.replay_ratio / (1.0 - self.replay_ratio)))
        if self.distillation_inputs == "noise":
            images = torch.randn((num, *self._sample_shape), generator=generator)
            labels = self._draw_labels(num, generator)
        elif self._pool is not None:
            idx = torch.randint(0, self._pool[0].shape[0], (num,), generator=generator)
            images, labels = self._pool[0][idx], [self._pool[1][i] for i in idx.tolist()]
        else:
            images, labels = self._generate(num, generator)
        self._last_replay = num
        batch = {"images": images, "loss_weight": self.loss_weight}
        if labels[0] is not None:
            batch["labels"] = self._raw_labels(labels)
        return batch

    def penalty(self, model: nn.Module, out: LossOutput) -> torch.Tensor | None:
        """λ·Σ_rows w(t)·‖f_student − f_teacher‖² / B over the replay rows, B = the whole batch: the main loss's
        parameterisation f and per-row weight w(t) (`out.weight`), with the teacher's prediction as the target.

        The teacher sees exactly the student's input: the same x_t, t and condition (after classifier-free-guidance
        dropout, so a row the student saw unconditionally is distilled from the teacher's unconditional output)."""
        if self.distillation_weight == 0 or self.teacher is None:
            return None
        if self.distillation_inputs == "buffer":
            num = out.num_replay  # the buffer's rows end the batch
        else:
            num = self._last_replay or 0
            if num > out.num_replay:
                raise RuntimeError(f"the batch holds {out.num_replay} replay rows, fewer than this strategy's {num}")
            # Generative replay adds its rows last (registry order, after buffer replay), so they end the batch.
        if num == 0:
            return None
        if out.weight is None:
            raise ValueError("distillation weights its loss like the objective: the LossOutput needs its weight w(t)")
        rows = slice(out.x_t.shape[0] - num, None)
        cond = {key: value[rows] for key, value in out.condition.items()}
        start = time.perf_counter()
        with torch.no_grad():
            target = self.teacher(out.x_t[rows], out.t[rows], **cond).prediction
        self.teacher_forwards += num
        self.teacher_seconds += time.perf_counter() - start
        mse = (out.prediction[rows].float() - target.float()).pow(2).flatten(1).mean(1)
        return self.distillation_weight * (out.weight[rows] * mse).sum() / out.x_t.shape[0]

    def after_task(self, model: nn.Module, context: TaskContext) -> None:
        labels = context.dataset.labels
        if labels is not None and self.conditioning.label_kind is not None:
            new = sorted(set(labels.tolist()) - set(self.past_labels), key=str)
            self.past_labels = (self.past_labels + new)[-MAX_STORED_PROMPTS:]
        self._seen = True
        self.teacher, self._pool, self._last_replay = None, None, None  # free memory between tasks

    # -------------------------------------------------------------------------------------------------- helpers
    def _raw_labels(self, labels: list):
        return torch.tensor(labels) if self.conditioning.label_kind == "class" else list(labels)

    def _draw_labels(self, num: int, generator: torch.Generator) -> list:
        """`num` labels uniform over the labels of finished tasks (None for unconditional models)."""
        if self.conditioning.label_kind is None:
            return [None] * num
        picks = torch.randint(0, len(self.past_labels), (num,), generator=generator)
        return [self.past_labels[i] for i in picks.tolist()]

    def _generate(self, num: int, generator: torch.Generator, desc: str | None = None) -> tuple[torch.Tensor, list]:
        """`num` teacher samples (CPU, [-1, 1]) with labels uniform over the past labels (None if unconditional).
        `desc`: a progress bar with this label (main process, once it runs a few seconds); None: no bar."""
        labels = self._draw_labels(num, generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        progress = None if desc is not None else False
        options = SamplerOptions(**{**self.options.__dict__, "seed": seed, "progress": progress})
        device = next(self.teacher.parameters()).device
        start = time.perf_counter()
        teacher, conditioning, schedule = self.teacher, self.conditioning, self.train_scheduler
        images = generate_samples(teacher, conditioning, schedule, labels, options, device, self.decode_fn, desc or "")
        self.teacher_seconds += time.perf_counter() - start
        self.teacher_forwards += num * self.options.num_inference_steps
        return images.cpu(), labels

    def log_values(self) -> dict[str, float]:
        """Cost accounting, logged every step: running totals of teacher image-forwards and seconds in the teacher."""
        return {"gr_teacher_forwards": float(self.teacher_forwards), "gr_teacher_seconds": self.teacher_seconds}

    # ---------------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        state = {
            "past_labels": list(self.past_labels),
            "seen": self._seen,
            "teacher_task": self.teacher_task,
            "teacher_forwards": self.teacher_forwards,
            "teacher_seconds": self.teacher_seconds,
        }
        if self.teacher is not None:
            state.update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        self.past_labels = list(state.get("past_labels", []))
        self._seen = bool(state.get("seen", False))
        self.teacher_task = state.get("teacher_task")
        self.teacher_forwards = int(state.get("teacher_forwards", 0))
        self.teacher_seconds = float(state.get("teacher_seconds", 0.0))
        teacher = {k[len("teacher.") :]: v for k, v in state.items() if k.startswith("teacher.")}
        self._loaded_teacher = teacher or None
