"""The training entry points' components as typed configs: data, model and conditioning, objective, run
(output, precision, resume, tracker), Hub upload, end-of-task evaluation and the latent-diffusion model. Each field
is a flag of main_ddpm.py / main_ldm.py (`utils.options`), and each config refuses, on construction, what its
own values cannot be together; checks across components stay with the code that combines them (cli/). A
conditioning kind's own flags live with the kind (`SlotConfig`: models/conditioning/slot.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..models.conditioning import CONDITIONINGS as CONDITIONINGS_BY_NAME
from ..models.conditioning import RegisteredKinds
from ..objectives import TIMESTEP_SAMPLINGS, default_prediction_type
from ..utils import bounds as b
from ..utils.errors import UserInputError
from ..utils.options import Checked, option, options_group

# `--conditioning` choices: "auto", then every registered kind, read at each use (models/conditioning/).
CONDITIONINGS = RegisteredKinds("auto")


@options_group("Data", "task file and transforms")
@dataclass
class DataConfig(Checked):
    data_path: str | None = option(
        None, help="task file (.npz, safe or legacy format); default: the bundled split digits (5 tasks)"
    )
    resolution: int | None = option(None, bounds=b.RESOLUTION, help="training resolution; default: the data's size")
    center_crop: bool = option(False, help="center crop (default: random crop, as upstream)")
    random_flip: bool = option(False, help="random horizontal flip")


@options_group("Model", "UNet and conditioning")
@dataclass
class ModelConfig(Checked):
    model_config_name_or_path: str | None = option(
        None,
        help="diffusers UNet config.json (file or folder) instead of the size flags below; default: built from them",
    )
    block_out_channels: list[int] | None = option(
        None, bounds=b.CHANNELS, nargs="+",
        help="UNet channel widths, one per resolution level; default: by resolution (32 64 64 up to 16 px, "
        "64 128 128 256 up to 32 px, wider above)",
    )  # fmt: skip
    layers_per_block: int | None = option(
        None, bounds=b.LAYERS_PER_BLOCK, help="ResNet layers per UNet level; default: 1 up to 16 px, else 2"
    )
    norm_num_groups: int | None = option(
        None, bounds=b.CHANNELS, help="GroupNorm groups (must divide every width); default: min(32, first width)"
    )
    conditioning: str = option(
        "auto", choices=CONDITIONINGS,
        help="auto: class labels → class-conditional, captions → text, no labels → unconditional; slots: each "
        "image conditions on its own Slot Attention slots (object-centric, any labels ignored)",
    )  # fmt: skip
    num_class_labels: int | None = option(
        None, bounds=b.NUM_CLASSES,
        help="number of classes over all tasks (implies class conditioning); default: from the data",
    )  # fmt: skip
    text_conditioning: bool = option(False, help="same as --conditioning text")
    clip_text_pretrained_path: str | None = option(
        None, help="CLIP text encoder + tokenizer: hub id or local dir (SD layout or flat)"
    )
    revision: str | None = option(None, help="hub revision (branch, tag or commit) of --clip_text_pretrained_path")
    variant: str | None = option(
        None, help='weights variant of --clip_text_pretrained_path, e.g. "fp16"; default: none'
    )
    classifier_free_guidance: bool = option(
        False, help="train with condition dropout (--uncond_p) so samples can use --guidance_scale"
    )
    uncond_p: float = option(0.1, bounds=b.PROBABILITY, help="CFG condition-dropout probability")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_out_channels is not None and not b.NUM_LEVELS.contains(len(self.block_out_channels)):
            raise UserInputError(
                f"--block_out_channels has {len(self.block_out_channels)} widths; a UNet has "
                f"{b.NUM_LEVELS.describe()} levels, one width each"
            )
        for kind in CONDITIONINGS_BY_NAME.values():  # a flag that belongs to one kind (and implies it under auto)
            if kind.model_flag is None or getattr(self, kind.model_flag[0], None) is None:
                continue
            if self.requested_kind not in ("auto", kind.kind):
                flag, sets = kind.model_flag
                raise UserInputError(f"--{flag} sets {sets}, not of --conditioning {self.requested_kind}")

    @property
    def requested_kind(self) -> str:
        """The conditioning asked for ("auto" is resolved against the data: `resolved_kind`)."""
        return "text" if self.text_conditioning else self.conditioning

    def resolved_kind(self, label_kind: str) -> str:
        """The kind to train on data with `label_kind` labels: the one asked for; under "auto", the kind whose own
        flag is set (--num_class_labels: class), else the kind made for such labels (class labels → class, captions
        → text), else unconditional."""
        if self.requested_kind != "auto":
            return self.requested_kind
        for name, kind in CONDITIONINGS_BY_NAME.items():
            if kind.model_flag is not None and getattr(self, kind.model_flag[0], None) is not None:
                return name
        by_labels = [name for name, kind in CONDITIONINGS_BY_NAME.items() if kind.auto_label_kind == label_kind]
        return by_labels[0] if by_labels else "none"


@options_group("Objective", "score- or energy-based denoising")
@dataclass
class ObjectiveConfig(Checked):
    energy_based_training: bool = option(False, help="ε̂ = ∇ₓE (double backward)")
    energy_score_type: str = option("dae", choices=("dae", "l2"), help="dae: E=½‖x−f‖²; l2: E=½‖f‖²")
    prediction_type: str | None = option(
        None, choices=("epsilon", "sample", "v_prediction"),
        help="what the UNet predicts: the noise ε, the clean image x₀ (sample) or v = αε − σx₀; unset: "
        'v_prediction for score models, epsilon for energy models (CHANGELOG.md, "Recipe and samplers")',
    )  # fmt: skip
    # optional: main_ldm has no DDPM schedule flags (its schedule is the pretrained scheduler's), so None there.
    ddpm_num_steps: int | None = option(1000, bounds=b.TIMESTEPS, optional=True, help="training timesteps T")
    ddpm_beta_schedule: str | None = option(
        "linear", choices=("linear", "scaled_linear", "squaredcos_cap_v2"), optional=True,
        help="noise schedule β_t over the T steps (squaredcos_cap_v2: the cosine schedule)",
    )  # fmt: skip
    rescale_betas_zero_snr: bool = option(
        False,
        help="rescale β so that ᾱ_T = 0, a zero SNR at the last step (Lin et al. 2024); needs --prediction_type "
        "v_prediction or sample, and samplers then start at t = T−1 (trailing timesteps)",
    )
    timestep_sampling: str = option(
        "uniform", choices=list(TIMESTEP_SAMPLINGS),
        help="training t: uniform; stratified (one draw spread evenly over the batch: same loss, lower variance); "
        "logit_normal (SD3: more weight on middle noise levels)",
    )  # fmt: skip
    snr_gamma: float | None = option(None, bounds=b.POSITIVE, help="min-SNR-γ loss weighting (e.g. 5.0)")
    noise_offset: float = option(0.0, bounds=b.NON_NEGATIVE, help="offset noise ε + c·ξ(B, C, 1, 1) (e.g. 0.05)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.energy_based_training and self.prediction_type not in (None, "epsilon"):
            raise UserInputError("--energy_based_training defines ε̂ = ∇ₓE, so it needs --prediction_type epsilon")
        if self.rescale_betas_zero_snr:
            check_zero_snr_prediction(self.prediction_type or ("epsilon" if self.energy_based_training else None))

    @property
    def energy_type(self) -> str | None:
        """The energy parameterisation, or None for a score model (`make_denoiser`)."""
        return self.energy_score_type if self.energy_based_training else None

    def resolved_prediction_type(self) -> str:
        """--prediction_type, or the model kind's default when unset (`default_prediction_type`)."""
        return self.prediction_type or default_prediction_type(self.energy_based_training)


def check_zero_snr_prediction(prediction_type: str | None) -> None:
    """A zero-terminal-SNR schedule needs a prediction that defines x₀ at ᾱ_T = 0 (None: not known yet)."""
    if prediction_type == "epsilon":
        raise UserInputError(
            "--rescale_betas_zero_snr makes ᾱ_T = 0, where ε-prediction cannot recover x₀ (0/0; energy models "
            "predict ε too): use --prediction_type v_prediction (or sample)"
        )


# The packages each --logger needs (any of them; accelerate's own test) and how to install them.
TRACKER_PACKAGES = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install tensorboard"),
    "wandb": (("wandb",), 'pip install "continual-diffusers[wandb]"'),
}


def check_tracker(name: str | None) -> None:
    """Refuse (`UserInputError`) a tracker whose package is not installed: accelerate would only warn and train
    with no tracker at all. Other trackers (accelerate's names, `GeneralTracker`s) are left to accelerate."""
    if not isinstance(name, str) or name not in TRACKER_PACKAGES:
        return
    import importlib.util

    packages, install = TRACKER_PACKAGES[name]
    if not any(importlib.util.find_spec(package) is not None for package in packages):
        raise UserInputError(
            f"--logger {name} needs the {packages[0]} package, which is not installed: {install}, or pass "
            "--logger none"
        )


@options_group("Run", "output folder, precision, resume, tracker")
@dataclass
class LaunchConfig(Checked):
    """How a training run is launched: output folder, precision, resume, tracker, dry run (the "Run" flags; the
    run's whole configuration is `cli.RunOptions`)."""

    output_dir: str = option("outputs/ddpm", help="checkpoints, task_k/ exports, logs, config.json")
    mixed_precision: str = option(
        "no", choices=("no", "fp16", "bf16"),
        help="autocast precision (accelerate); fp16 adds loss scaling; weights stay fp32",
    )  # fmt: skip
    resume_from_checkpoint: str | None = option(
        None, help="'latest' (the newest in --output_dir) or a checkpoint-N folder; default: start from scratch"
    )
    logger: str = option(
        "tensorboard", choices=("tensorboard", "wandb", "none"),
        help="experiment tracker for losses and hyper-parameters (none: no tracker)",
    )  # fmt: skip
    logging_dir: str = option("logs", help="relative to --output_dir")
    project_name: str = option("continual_diffusers", help="tracker project")
    dry_run: bool = option(False, help="print the resolved configuration and exit")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_tracker(self.logger)


@options_group("Hub", "upload the run to the Hugging Face Hub when training ends")
@dataclass
class HubConfig(Checked):
    push_to_hub: bool = option(
        False,
        help="upload --output_dir (task folders with their model cards, config.json, logs; not the checkpoints) "
        "with huggingface_hub (token of `huggingface-cli login` or HF_TOKEN)",
    )
    hub_model_id: str | None = option(
        None, help="the Hub repo, user/name or name; default: --output_dir's folder name"
    )
    hub_private_repo: bool = option(False, help="create the Hub repo as private")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.push_to_hub and (self.hub_model_id or self.hub_private_repo):
            raise UserInputError("--hub_model_id / --hub_private_repo need --push_to_hub")

    def repo_id(self, output_dir: str) -> str:
        """--hub_model_id, or the output folder's name; checked before training, not after it, with huggingface_hub's
        own rules (`validate_repo_id`: at most 96 characters per part, letters, digits, '-', '_', '.', no '--' or
        '..', no '-' or '.' at either end of a part, no '.git' ending), the ones the upload itself applies."""
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        repo = self.hub_model_id or os.path.basename(os.path.normpath(output_dir))
        try:
            validate_repo_id(repo)
        except HFValidationError as err:
            flag = "--hub_model_id" if self.hub_model_id else "--output_dir's folder name (the default --hub_model_id)"
            raise UserInputError(f"{flag} is not a Hub repo id: {str(err).splitlines()[0]}") from None
        return repo


@options_group("Evaluation", "per-task metrics with an oracle classifier (class-labelled data)")
@dataclass
class EvaluationConfig(Checked):
    eval_every_task: bool = option(False, help="after each task, score every seen task and write output_dir/report/")
    eval_num_samples: int = option(100, bounds=b.EVAL_SAMPLES, help="generated images per task and evaluation")
    test_data_path: str | None = option(
        None, help="real test images per task (default with the bundled digits: their held-out split)"
    )
    oracle_path: str | None = option(
        None, help="trained oracle folder; default: output_dir/oracle, trained on the training data if absent"
    )


@options_group("Latent diffusion model", "Stable-Diffusion components, caption dropout")
@dataclass
class LDMConfig(Checked):
    pretrained_model_name_or_path: str = option(
        help="hub id or local dir in the diffusers SD layout (vae/ text_encoder/ tokenizer/ scheduler/ unet/)"
    )
    revision: str | None = option(None, help="hub revision (branch, tag or commit) of the pretrained model")
    variant: str | None = option(None, help='weights variant, e.g. "fp16"')
    unet_scratch: bool = option(False, help="random-init UNet from the repo's unet config")
    model_config_name_or_path: str | None = option(None, help="with --unet_scratch: a (smaller) UNet config.json")
    cache_latents: bool = option(False, help="run the VAE once per image and task, not per step")
    uncond_p: float = option(0.1, bounds=b.PROBABILITY, help="caption dropout to the empty prompt (CFG); 0: off")
    gradient_checkpointing: bool = option(False, help="UNet activation checkpointing")
