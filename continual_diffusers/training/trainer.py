"""`ContinualTrainer`: the training loop, one denoiser trained task after task under accelerate, with plug-ins:

    trainer = ContinualTrainer.build(tasks, TrainConfig(output_dir="out"), model=unet, conditioning=..., strategy=...)
    for task in tasks:              # or trainer.fit(tasks): the same loop, bit for bit
        trainer.train_task(task)    # tasks in increasing task id order, each once

Per task (`train_task`): strategy.before_task → fresh optimizer + LR schedule → accelerate.prepare → optimizer steps
(gradient accumulation, clipping, NaN guard `guard.py`, EMA, logs `step_log.py`, periodic checkpoints) →
strategy.after_task → end-of-task callbacks (`callbacks.py`: export, samples, evaluation, model cards) → end-of-task
checkpoint (`state.py`: checkpoints, resuming). Between tasks the model is unwrapped and the accelerator's references
are freed, so nothing piles up across tasks and every process does the same thing. Conditioning kinds are plug-ins
(`models.conditioning.Conditioning`): the loop never names one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from ..data import Task, TaskDataset, TaskSequence
from ..data.batches import concat_batches
from ..models.conditioning import Conditioning
from ..objectives import DenoisingObjective
from ..strategies import ContinualStrategy, TaskContext
from ..utils.faults import fault_point
from ..utils.logging import get_logger
from ..utils.seed import make_generator
from . import build as builder
from . import callbacks, state
from .batches import BatchSchedule
from .config import TrainConfig
from .guard import nonfinite_guard
from .optim import build_ema, build_lr_schedule, build_optimizer
from .state import Position
from .step_log import StepLog
from .validation import ValidationSampler

logger = get_logger(__name__)


class ContinualTrainer:
    """Continual training of one denoiser over a task sequence; `build` assembles one from library objects.

    Args:
        accelerator: the `accelerate.Accelerator` that runs training (devices, mixed precision, trackers).
        denoiser: `ScoreModel` / `EnergyModel` (`make_denoiser`) around the UNet.
        conditioning: a `Conditioning` (`Unconditional`, `ClassConditioning`, `TextConditioning`, ...).
        objective, strategy, cfg: the denoising loss, the continual-learning strategy, the loop's settings.
        make_dataset: `Task` → `TaskDataset` (the image transform, or latent encoding for latent models).
        export_metadata: `continual_diffusers.json` of every task_k/ export (`build.export_metadata` makes it).
        text_components: (tokenizer, text_encoder) of text models, exported with each task.
        task_eval: end-of-task evaluation, `callable(model, task_id, seen_tasks, device)` with `state_dict()`.
        decode_fn / vae: latent models: latents → images in [-1, 1], and the VAE exported with each task.

    Raises `UserInputError` when the UNet does not take the condition (`build.check_model_fits`).
    """

    def __init__(
        self,
        accelerator: Accelerator,
        denoiser: torch.nn.Module,
        conditioning: Conditioning,
        objective: DenoisingObjective,
        strategy: ContinualStrategy,
        cfg: TrainConfig,
        make_dataset: Callable[[object], TaskDataset],
        export_metadata: dict,
        text_components: tuple | None = None,
        task_eval=None,
        decode_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        vae: torch.nn.Module | None = None,
    ):
        builder.check_model_fits(denoiser, conditioning, cfg)
        self.accelerator, self.model, self.conditioning = accelerator, denoiser, conditioning
        self.objective, self.strategy, self.cfg = objective, strategy, cfg
        self.make_dataset, self.export_metadata = make_dataset, export_metadata
        self.text_components, self.vae = text_components, vae  # exported with each task
        self.task_eval = task_eval  # callable(model, task_id, seen_tasks, device) -> metrics, with state_dict()
        self.ema = build_ema(denoiser.unet, cfg, denoiser.parameters())  # slot models: the slot encoder's too
        if self.ema is not None:
            self.ema.to(accelerator.device)
        self.validator = ValidationSampler(cfg, conditioning, objective.scheduler, decode_fn)
        self.end_of_task = list(callbacks.END_OF_TASK)  # (trainer, TaskEnd) callables, in order
        state.start(self)  # position 0, nothing restored (`state.py`)

    build = classmethod(builder.build)  # ContinualTrainer.build(tasks, cfg, model, ...): see `build.build`
    save_checkpoint = state.save_checkpoint  # checkpoints and resuming: `state.py`
    restore = state.restore
    attach_evaluation = state.attach_evaluation
    _check_ema_pairing = state.check_ema_pairing

    def fit(self, tasks: TaskSequence | Iterable[Task], resume_path: str | None = None) -> None:
        """`train_task` for every task of `tasks` not trained yet (a restored checkpoint's finished tasks, or those
        of an earlier `fit` / `train_task`, are skipped), then end the run: `accelerator.end_training()` (trackers,
        and the process group of a multi-process run, so there call `fit` once, or `train_task` per task).

        `resume_path`: restore that checkpoint first (the CLI calls `restore` itself, before the run writes
        anything). Raises `UserInputError` for an untrained task whose id is smaller than the last trained one's."""
        tasks = builder.as_task_sequence(tasks)
        if resume_path:
            self.restore(resume_path, tasks)
        state.remember(self, tasks)
        for task in tasks:
            if task.task_id in self.position.seen_tasks:
                logger.info("task %d already trained: skipped", task.task_id)
                continue
            self.train_task(task)
        self.accelerator.end_training()

    def train_task(self, task: Task) -> None:
        """Train one task to the end: optimizer steps, the strategy's `after_task`, the end-of-task callbacks (task
        export with samples, ...), end-of-task checkpoint. `for task in tasks: trainer.train_task(task)` equals
        `fit(tasks)` bit for bit (same weights, exports and checkpoints; `fit` also ends the trackers).

        Raises `UserInputError` when the task was trained already, its id is not greater than the last trained
        task's, or a restored checkpoint stopped in the middle of another task."""
        state.check_next(self, task)
        state.remember(self, [task])
        self._train_task(task)
        pos = self.position
        self.position = Position(pos.task_index + 1, 0, pos.global_step, pos.seen_tasks)
        self._task_in_progress = None
        fault_point("between_tasks")

    def _train_task(self, task) -> None:
        cfg, acc, pos = self.cfg, self.accelerator, self.position
        dataset = self.make_dataset(task)
        schedule = self.task_schedule(task)
        num_steps = self.steps_for_task(schedule)
        self.strategy.before_task(self.model, task.task_id, apply_ema=self.apply_ema if self.ema else None)
        self._check_ema_pairing()
        if self.ema is not None and cfg.ema_scope == "task" and pos.step_in_task == 0:
            # diffusers' EMA decay is 0 at optimization step 0: the next update copies the weights, then warms up.
            self.ema.optimization_step = 0
        self.model.train()  # whatever end-of-task work did to it: a task trains in train mode, resumed or not
        optimizer = build_optimizer(self.model.parameters(), cfg)
        lr_schedule = build_lr_schedule(optimizer, cfg, num_steps)
        model, optimizer = acc.prepare(self.model, optimizer)
        state.load_pending(self, optimizer, lr_schedule)
        acc.step = pos.step_in_task * cfg.gradient_accumulation_steps
        bar = tqdm(total=num_steps, initial=pos.step_in_task, desc=f"task {task.task_id}",
                   disable=not acc.is_local_main_process)  # fmt: skip
        while pos.step_in_task < num_steps:
            logs = self._optimizer_step(model, optimizer, lr_schedule, dataset, schedule, task.task_id)
            pos.step_in_task += 1
            pos.global_step += 1
            acc.log(logs, step=pos.global_step)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}")
            every = cfg.checkpointing_steps
            if every and pos.global_step % every == 0 and pos.step_in_task < num_steps:
                self.save_checkpoint(optimizer, lr_schedule, task_done=False)
        bar.close()
        self.model = acc.unwrap_model(model, keep_fp32_wrapper=False)
        self._end_task(task, dataset, optimizer, lr_schedule)
        acc.free_memory()

    def task_schedule(self, task) -> BatchSchedule:
        acc, cfg = self.accelerator, self.cfg
        return BatchSchedule(
            len(task), cfg.train_batch_size, acc.num_processes, acc.process_index, cfg.seed, task.task_id
        )

    def steps_for_task(self, schedule: BatchSchedule) -> int:
        """Optimizer steps for one task: --max_train_steps, or num_epochs passes over the task's data."""
        if self.cfg.max_train_steps:
            return self.cfg.max_train_steps
        return max(1, math.ceil(self.cfg.num_epochs * schedule.steps_per_epoch / self.cfg.gradient_accumulation_steps))

    def _optimizer_step(self, model, optimizer, lr_schedule, dataset, schedule, task_id) -> dict:
        acc, cfg = self.accelerator, self.cfg
        ga = cfg.gradient_accumulation_steps
        log = StepLog(task_id)
        fault = None  # what was non-finite in this optimizer step (the NaN guard)
        for micro in range(ga):
            micro_step = self.position.step_in_task * ga + micro
            with acc.accumulate(model):
                out, penalty = self._loss(model, dataset, schedule, task_id, micro_step)
                loss = out.loss.mean() + (penalty if penalty is not None else 0.0)
                acc.backward(loss)
                grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm) if acc.sync_gradients else None
                fault_point("train_step")
                value = loss.detach().item()
                if fault is None and not math.isfinite(value):
                    fault = f"loss ({value})"
                if acc.sync_gradients:
                    fault = nonfinite_guard(self, fault, grad_norm, task_id)
                if fault is None:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            log.add(value / ga, out, penalty)
        if not optimizer.step_was_skipped:
            lr_schedule.step()
        if fault is None:  # a skipped step (--on_nonfinite skip) leaves the weights, the EMA and SI untouched
            self.strategy.after_optimizer_step(self.model)
            if self.ema is not None:
                self.ema.step(self.model.parameters())
        else:
            self.strategy.discard_step(self.model)
        return log.values(lr_schedule.get_last_lr()[0], fault, grad_norm, self.ema, self.strategy)

    def _loss(self, model, dataset, schedule, task_id, micro_step):
        acc, cfg = self.accelerator, self.cfg
        data_gen = make_generator(cfg.seed, "data", task_id, micro_step, acc.process_index)
        noise_gen = make_generator(cfg.seed, "noise", task_id, micro_step, acc.process_index, device=acc.device)
        batch = dataset.batch(schedule.indices(micro_step), generator=data_gen)
        replay = self.strategy.replay_batch(cfg.train_batch_size, data_gen)
        num_current = batch["images"].shape[0]
        if replay is not None:
            batch = concat_batches([batch, replay], "a replay batch must carry labels exactly when the task data does")
        x0 = batch["images"].to(acc.device)
        cond = self.encode_labels(batch, acc.device)
        if cfg.uncond_p > 0:
            keep = torch.rand(x0.shape[0], generator=noise_gen, device=acc.device) >= cfg.uncond_p
            cond = self.conditioning.drop(cond, keep)
        cond = self.conditioning.training_noise(cond, noise_gen)  # e.g. slot models' random initial slots
        out = self.objective(model, x0, cond, generator=noise_gen)
        if replay is not None:
            # Replayed rows end the batch. Their losses are scaled by the strategy's weight (one number, or one per
            # row when several strategies replay); the batch mean is taken afterwards.
            weights = torch.ones_like(out.loss)
            weights[num_current:] = torch.as_tensor(replay.get("loss_weight", 1.0), dtype=weights.dtype)
            out = dataclasses.replace(out, loss=out.loss * weights, num_replay=x0.shape[0] - num_current)
        return out, self.strategy.penalty(model, out)

    def _end_task(self, task, dataset, optimizer, lr_schedule) -> None:
        acc = self.accelerator
        context = TaskContext(task.task_id, dataset, self.objective, self.encode_labels, acc.device, self.cfg.seed)
        self.strategy.after_task(self.model, context)
        if task.task_id not in self.position.seen_tasks:
            self.position.seen_tasks.append(task.task_id)
        if acc.is_main_process:  # task_<id>/, its samples, the evaluation, the model cards (`callbacks.py`)
            callbacks.run_end_of_task(self, task)
        fault_point("export_done")
        acc.wait_for_everyone()
        self.save_checkpoint(optimizer, lr_schedule, task_done=True)

    def apply_ema(self, denoiser: torch.nn.Module) -> None:
        """Write the EMA weights into `denoiser` (a copy of the model: the EMA tracks the UNet's parameters, and
        a slot model's slot encoder's)."""
        self.ema.copy_to(denoiser.parameters())

    def encode_labels(self, batch: dict, device) -> dict:
        """A batch's condition: `conditioning.encode` of its `training_inputs` (labels, or a slot model's images)."""
        return self.conditioning.encode(self.conditioning.training_inputs(batch), device)
