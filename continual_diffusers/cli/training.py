"""Training flags (data, model, objective, training) and their conversion into library objects for main_ddpm."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import MISSING
from types import SimpleNamespace

from ..data import ImageTransform, TaskDataset, TaskSequence, load_split_digits, load_tasks
from ..models.conditioning import (
    ClassConditioning,
    SlotConditioning,
    TextConditioning,
    Unconditional,
    load_text_encoder,
)
from ..models.denoiser import make_denoiser
from ..models.slots import SlotEncoder
from ..models.unet import UNetSpec, build_unet, check_unet_config
from ..objectives import TIMESTEP_SAMPLINGS, default_prediction_type
from ..training.build import export_metadata, tracker_config  # noqa: F401 (tracker_config: re-exported by cli)
from ..training.config import TrainConfig
from ..utils import bounds as b
from ..utils.errors import UserInputError
from .base import add_config_arg, new_parser
from .evaluation import add_evaluation_args
from .sampling import add_sampler_args, check_inference_steps, check_sampler_ranges
from .strategy import add_strategy_args


def add_data_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Data", "task file and transforms")
    g.add_argument(
        "--data_path",
        default=None,
        help="task file (.npz, safe or legacy format); default: the bundled split digits (5 tasks)",
    )
    g.add_argument(
        "--resolution", type=b.RESOLUTION, default=None, help="training resolution; default: the data's size"
    )
    g.add_argument("--center_crop", action="store_true", help="center crop (default: random crop, as upstream)")
    g.add_argument("--random_flip", action="store_true", help="random horizontal flip")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Model", "UNet and conditioning")
    g.add_argument(
        "--model_config_name_or_path",
        default=None,
        help="diffusers UNet config.json (file or folder) instead of the size flags below; default: built from them",
    )
    g.add_argument(
        "--block_out_channels",
        type=b.CHANNELS,
        nargs="+",
        default=None,
        help="UNet channel widths, one per resolution level; default: by resolution (32 64 64 up to 16 px, "
        "64 128 128 256 up to 32 px, wider above)",
    )
    g.add_argument(
        "--layers_per_block",
        type=b.LAYERS_PER_BLOCK,
        default=None,
        help="ResNet layers per UNet level; default: 1 up to 16 px, else 2",
    )
    g.add_argument(
        "--norm_num_groups",
        type=b.CHANNELS,
        default=None,
        help="GroupNorm groups (must divide every width); default: min(32, first width)",
    )
    g.add_argument(
        "--conditioning",
        choices=["auto", "none", "class", "text", "slots"],
        default="auto",
        help="auto: class labels → class-conditional, captions → text, no labels → unconditional; slots: each "
        "image conditions on its own Slot Attention slots (object-centric, any labels ignored)",
    )
    g.add_argument(
        "--num_class_labels",
        type=b.NUM_CLASSES,
        default=None,
        help="number of classes over all tasks (implies class conditioning); default: from the data",
    )
    g.add_argument("--text_conditioning", action="store_true", help="same as --conditioning text")
    g.add_argument(
        "--clip_text_pretrained_path",
        default=None,
        help="CLIP text encoder + tokenizer: hub id or local dir (SD layout or flat)",
    )
    g.add_argument(
        "--revision", default=None, help="hub revision (branch, tag or commit) of --clip_text_pretrained_path"
    )
    g.add_argument(
        "--variant", default=None, help='weights variant of --clip_text_pretrained_path, e.g. "fp16"; default: none'
    )
    g.add_argument(
        "--classifier_free_guidance",
        action="store_true",
        help="train with condition dropout (--uncond_p) so samples can use --guidance_scale",
    )
    g.add_argument("--uncond_p", type=b.PROBABILITY, default=0.1, help="CFG condition-dropout probability")
    g = parser.add_argument_group(
        "Slots", "--conditioning slots: CNN + Slot Attention encoder trained with the UNet (Locatello et al. 2020)"
    )
    g.add_argument("--num_slots", type=b.NUM_SLOTS, default=4, help="K slots per image (objects + background)")
    g.add_argument("--slot_dim", type=b.CHANNELS, default=64, help="slot width D (the UNet's cross_attention_dim)")
    g.add_argument("--slot_iters", type=b.SLOT_ITERATIONS, default=3, help="T Slot Attention iterations")
    g.add_argument("--slot_encoder_channels", type=b.CHANNELS, default=32, help="width of the slot encoder's CNN")
    g.add_argument(
        "--slot_init",
        choices=["sampled", "learned"],
        default="sampled",
        help="initial slots: sampled N(μ, σ²) per image (exchangeable: slots bind to objects) or a learned set",
    )
    g.add_argument(
        "--slot_decoder_weight",
        type=b.NON_NEGATIVE,
        default=1.0,
        help="λ of the auxiliary spatial-broadcast decoder loss that makes slots segment objects (0: the "
        "denoising loss alone, which let one slot describe several objects: FG-ARI 0.55 vs 0.85, see README)",
    )
    g.add_argument(
        "--slot_pixel_tokens",
        action="store_true",
        help="append each pixel's value to its token (a colour cue for flat-colour objects)",
    )


def add_objective_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Objective", "score- or energy-based denoising")
    g.add_argument("--energy_based_training", action="store_true", help="ε̂ = ∇ₓE (double backward)")
    g.add_argument("--energy_score_type", choices=["dae", "l2"], default="dae", help="dae: E=½‖x−f‖²; l2: E=½‖f‖²")
    g.add_argument(
        "--prediction_type",
        choices=["epsilon", "sample", "v_prediction"],
        default=None,
        help="what the UNet predicts: the noise ε, the clean image x₀ (sample) or v = αε − σx₀; unset: "
        'v_prediction for score models, epsilon for energy models (README "Recipe and samplers")',
    )
    g.add_argument("--ddpm_num_steps", type=b.TIMESTEPS, default=1000, help="training timesteps T")
    g.add_argument(
        "--ddpm_beta_schedule",
        default="linear",
        choices=["linear", "scaled_linear", "squaredcos_cap_v2"],
        help="noise schedule β_t over the T steps (squaredcos_cap_v2: the cosine schedule)",
    )
    g.add_argument(
        "--rescale_betas_zero_snr",
        action="store_true",
        help="rescale β so that ᾱ_T = 0, a zero SNR at the last step (Lin et al. 2024); needs --prediction_type "
        "v_prediction or sample, and samplers then start at t = T−1 (trailing timesteps)",
    )
    g.add_argument(
        "--timestep_sampling",
        choices=list(TIMESTEP_SAMPLINGS),
        default="uniform",
        help="training t: uniform; stratified (one draw spread evenly over the batch: same loss, lower variance); "
        "logit_normal (SD3: more weight on middle noise levels)",
    )
    g.add_argument("--snr_gamma", type=b.POSITIVE, default=None, help="min-SNR-γ loss weighting (e.g. 5.0)")
    g.add_argument(
        "--noise_offset", type=b.NON_NEGATIVE, default=0.0, help="offset noise ε + c·ξ(B, C, 1, 1) (e.g. 0.05)"
    )


def add_training_args(parser: argparse.ArgumentParser) -> None:
    # TrainConfig's defaults, read from the dataclass (building one would validate an output_dir).
    d = SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not MISSING})
    g = parser.add_argument_group("Training", "budget, optimiser, EMA, checkpoints, logging")
    g.add_argument("--output_dir", default="outputs/ddpm", help="checkpoints, task_k/ exports, logs, config.json")
    g.add_argument(
        "--seed",
        type=b.SEED,
        default=d.seed,
        help="seeds the model initialisation and every random draw (data order, crops, noise, timesteps)",
    )
    g.add_argument("--train_batch_size", type=b.BATCH_SIZE, default=d.train_batch_size, help="per device")
    g.add_argument("--num_epochs", type=b.STEPS, default=50, help="epochs per task")
    g.add_argument("--max_train_steps", type=b.STEPS, default=None, help="optimizer steps per task (overrides epochs)")
    g.add_argument(
        "--gradient_accumulation_steps",
        type=b.GRAD_ACCUMULATION,
        default=1,
        help="micro-batches per optimizer step (an optimizer step sees batch × processes × this samples)",
    )
    g.add_argument("--learning_rate", type=b.POSITIVE, default=d.learning_rate, help="AdamW peak learning rate")
    g.add_argument(
        "--lr_scheduler",
        default=d.lr_scheduler,
        choices=["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"],
        help="diffusers learning-rate schedule after the warm-up; restarts at every task, over its optimizer steps",
    )
    g.add_argument(
        "--lr_warmup_steps", type=b.STEPS_OR_ZERO, default=d.lr_warmup_steps, help="optimizer steps, per task"
    )
    g.add_argument("--adam_beta1", type=b.PROBABILITY, default=d.adam_beta1, help="AdamW β₁ (gradient momentum)")
    g.add_argument(
        "--adam_beta2", type=b.PROBABILITY, default=d.adam_beta2, help="AdamW β₂ (squared-gradient average)"
    )
    g.add_argument(
        "--adam_weight_decay", type=b.NON_NEGATIVE, default=d.adam_weight_decay, help="AdamW decoupled weight decay"
    )
    g.add_argument("--adam_epsilon", type=b.POSITIVE, default=d.adam_epsilon, help="AdamW ε added to the denominator")
    g.add_argument("--use_8bit_adam", action="store_true", help="bitsandbytes AdamW8bit (pip install '.[bnb]')")
    g.add_argument(
        "--clip_grad_norm", "--max_grad_norm", dest="max_grad_norm", type=b.POSITIVE, default=d.max_grad_norm,
        help="clip the global gradient L2 norm to this value before every optimizer step",
    )  # fmt: skip
    g.add_argument("--use_ema", action="store_true", help="EMA weights for exports and validation")
    g.add_argument(
        "--ema_inv_gamma",
        type=b.POSITIVE,
        default=d.ema_inv_gamma,
        help="EMA warm-up: decay(s) = min(1 − (1 + s/inv_gamma)^−power, max_decay) after s optimizer steps",
    )
    g.add_argument("--ema_power", type=b.POSITIVE, default=d.ema_power, help="EMA warm-up power (see --ema_inv_gamma)")
    g.add_argument(
        "--ema_max_decay", type=b.DECAY, default=d.ema_max_decay, help="upper bound of the EMA decay per step"
    )
    g.add_argument(
        "--ema_scope",
        choices=["task", "sequence"],
        default=None,
        help="task (default with --use_ema): restart the EMA warm-up at every task, so task k's EMA averages task "
        "k's training only; sequence: one EMA over the whole task sequence",
    )
    g.add_argument(
        "--mixed_precision",
        choices=["no", "fp16", "bf16"],
        default="no",
        help="autocast precision (accelerate); fp16 adds loss scaling; weights stay fp32",
    )
    g.add_argument(
        "--checkpointing_steps",
        type=b.STEPS_OR_ZERO,
        default=d.checkpointing_steps,
        help="resumable checkpoint every N optimizer steps (0: only at task ends)",
    )
    g.add_argument(
        "--checkpoints_total_limit",
        type=b.CHECKPOINT_LIMIT,
        default=None,
        help="keep the newest N checkpoints (older ones are deleted); default: keep all",
    )
    g.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="'latest' (the newest in --output_dir) or a checkpoint-N folder; default: start from scratch",
    )
    g.add_argument(
        "--on_nonfinite",
        choices=["stop", "skip"],
        default=d.on_nonfinite,
        help="a NaN/inf loss or gradient: stop (exit 3, the last good checkpoint kept) or skip that optimizer step",
    )
    g.add_argument(
        "--logger",
        choices=["tensorboard", "wandb", "none"],
        default="tensorboard",
        help="experiment tracker for losses and hyper-parameters (none: no tracker)",
    )
    g.add_argument("--logging_dir", default="logs", help="relative to --output_dir")
    g.add_argument("--project_name", default="continual_diffusers", help="tracker project")
    g.add_argument("--dry_run", action="store_true", help="print the resolved configuration and exit")
    g = parser.add_argument_group("Hub", "upload the run to the Hugging Face Hub when training ends")
    g.add_argument(
        "--push_to_hub",
        action="store_true",
        help="upload --output_dir (task folders with their model cards, config.json, logs; not the checkpoints) "
        "with huggingface_hub (token of `huggingface-cli login` or HF_TOKEN)",
    )
    g.add_argument(
        "--hub_model_id", default=None, help="the Hub repo, user/name or name; default: --output_dir's folder name"
    )
    g.add_argument("--hub_private_repo", action="store_true", help="create the Hub repo as private")


def ddpm_parser() -> argparse.ArgumentParser:
    parser = new_parser("Continual training of a pixel-space DDPM UNet (score- or energy-based) over a task sequence.")
    for add in (
        add_data_args,
        add_model_args,
        add_objective_args,
        add_strategy_args,
        add_training_args,
        add_sampler_args,
        add_evaluation_args,
    ):
        add(parser)
    add_config_arg(parser)
    return parser


# ------------------------------------------------------------------------------------------ Namespace → objects
def hub_repo_id(args: argparse.Namespace) -> str:
    """--hub_model_id, or the output folder's name."""
    return args.hub_model_id or os.path.basename(os.path.normpath(args.output_dir))


def check_hub_flags(args: argparse.Namespace) -> None:
    """--push_to_hub's repo id is checked before training, not after it."""
    import re

    if not args.push_to_hub:
        if args.hub_model_id or args.hub_private_repo:
            raise UserInputError("--hub_model_id / --hub_private_repo need --push_to_hub")
        return
    repo = hub_repo_id(args)
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo) or repo.startswith((".", "-")) or ".." in repo:
        raise UserInputError(f"--hub_model_id must be a Hub repo id (user/name or name), got {repo!r}")


def check_ranges(args: argparse.Namespace) -> None:
    """Flags that must agree with each other (each flag's own bounds are checked when it is parsed:
    utils/bounds.py)."""
    check_sampler_ranges(args)
    check_hub_flags(args)
    if args.energy_based_training and args.prediction_type not in (None, "epsilon"):
        raise UserInputError("--energy_based_training defines ε̂ = ∇ₓE, so it needs --prediction_type epsilon")
    if args.rescale_betas_zero_snr:
        check_zero_snr_prediction(args.prediction_type or ("epsilon" if args.energy_based_training else None))
    if args.ema_scope is not None and not args.use_ema:
        raise UserInputError(f"--ema_scope {args.ema_scope} sets how the EMA spans tasks, so it needs --use_ema")
    if args.ddpm_num_steps is not None:  # main_ldm: the pretrained scheduler's T, checked once it is loaded
        check_inference_steps(args, args.ddpm_num_steps, "--ddpm_num_steps")


def prediction_type(args: argparse.Namespace) -> str:
    """--prediction_type, or the model kind's default when unset (`default_prediction_type`)."""
    return args.prediction_type or default_prediction_type(args.energy_based_training)


def check_zero_snr_prediction(prediction_type: str | None) -> None:
    """A zero-terminal-SNR schedule needs a prediction that defines x₀ at ᾱ_T = 0 (None: not known yet)."""
    if prediction_type == "epsilon":
        raise UserInputError(
            "--rescale_betas_zero_snr makes ᾱ_T = 0, where ε-prediction cannot recover x₀ (0/0; energy models "
            "predict ε too): use --prediction_type v_prediction (or sample)"
        )


def load_training_tasks(args: argparse.Namespace) -> TaskSequence:
    if args.data_path is None:
        return load_split_digits()[0]
    if not os.path.exists(args.data_path):
        raise UserInputError(f"--data_path {args.data_path}: no such task file or task folder")
    return load_tasks(args.data_path)


def conditioning_kind(args: argparse.Namespace, tasks: TaskSequence) -> str:
    kind = "text" if args.text_conditioning else args.conditioning
    if args.num_class_labels is not None and kind not in ("auto", "class"):
        raise UserInputError(
            f"--num_class_labels sets the classes of a class-conditional model, not of --conditioning {kind}"
        )
    if kind == "auto":
        kind = "class" if args.num_class_labels else {"class": "class", "text": "text"}.get(tasks.label_kind, "none")
    if kind == "class" and tasks.label_kind != "class":
        raise UserInputError(
            f"class conditioning needs integer class labels, but the task file has {tasks.label_kind}"
        )
    if kind == "text" and tasks.label_kind != "text":
        raise UserInputError(f"text conditioning needs caption labels, but the task file has {tasks.label_kind}")
    if kind == "slots":
        check_slot_run(args)
    return kind


def check_slot_run(args: argparse.Namespace) -> None:
    """What slot conditioning cannot be combined with, each refused with what to do instead."""
    from .strategy import enabled_strategies

    if "generative_replay" in enabled_strategies(args):
        raise UserInputError(
            "generative replay is not available for --conditioning slots: a slot model's condition is an image's "
            "own slots, so a generated replay has no condition of its own (the teacher would have to sample from "
            "its null slot set and be distilled on the replay's slots, which the strategy does not do); use "
            "buffer replay (--buffer_type), EWC (--ewc_loss) or SI (--strategy si)"
        )
    if getattr(args, "eval_every_task", False):
        raise UserInputError(
            "--eval_every_task scores class-conditional or unconditional samples with an oracle; evaluate a slot "
            "model with evaluate.py --slot_mode reconstruct|masks|compose, or benchmarks/bench_slots.py"
        )
    if args.model_config_name_or_path:
        raise UserInputError("--model_config_name_or_path is not supported with --conditioning slots; use the flags")
    if not args.classifier_free_guidance:
        raise UserInputError(
            "--conditioning slots needs --classifier_free_guidance: the end-of-task samples and unconditional "
            "sampling use the learned null slot set, which only CFG training (--uncond_p) learns"
        )


def build_conditioning(args: argparse.Namespace, tasks: TaskSequence, kind: str):
    """(conditioning, text components or None)."""
    cfg_on = args.classifier_free_guidance
    if kind == "class":
        num = args.num_class_labels or tasks.num_classes
        if num < tasks.num_classes:
            raise UserInputError(f"--num_class_labels {num} is smaller than the data's {tasks.num_classes} classes")
        return ClassConditioning(num, null_class=cfg_on), None
    if kind == "text":
        if not args.clip_text_pretrained_path:
            raise UserInputError("text conditioning needs --clip_text_pretrained_path (hub id or local folder)")
        if not args.validation_prompts:
            raise UserInputError("text conditioning needs --validation_prompts for the end-of-task samples")
        tokenizer, encoder = load_text_encoder(args.clip_text_pretrained_path, args.revision, args.variant)
        return TextConditioning(tokenizer, encoder), (tokenizer, encoder)
    if kind == "slots":
        height, width = tasks.image_size
        encoder = SlotEncoder(
            in_channels=tasks.num_channels,
            resolution=args.resolution or min(height, width),
            num_slots=args.num_slots,
            slot_dim=args.slot_dim,
            num_iterations=args.slot_iters,
            hidden_channels=args.slot_encoder_channels,
            null_slots=cfg_on,
            slot_init=args.slot_init,
            pixel_tokens=args.slot_pixel_tokens,
            decoder_loss_weight=args.slot_decoder_weight,
        )
        return SlotConditioning(encoder), None
    return Unconditional(), None


def build_unet_from_args(args: argparse.Namespace, tasks: TaskSequence, conditioning, resolution: int):
    if args.model_config_name_or_path:
        return _unet_from_config(args.model_config_name_or_path, conditioning, tasks, resolution)
    spec = UNetSpec(
        resolution=resolution,
        in_channels=tasks.num_channels,
        conditioning=conditioning.kind,
        num_classes=getattr(conditioning, "num_classes", 0),
        null_class=conditioning.supports_null and conditioning.kind == "class",
        cross_attention_dim=getattr(conditioning, "hidden_size", None) or getattr(conditioning, "slot_dim", None),
        block_out_channels=tuple(args.block_out_channels) if args.block_out_channels else None,
        layers_per_block=args.layers_per_block,
        norm_num_groups=args.norm_num_groups,
    )
    return build_unet(spec)


def _unet_from_config(path: str, conditioning, tasks: TaskSequence, resolution: int):
    from diffusers import UNet2DConditionModel, UNet2DModel

    file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    try:
        with open(file) as fh:
            config = json.load(fh)
    except (OSError, ValueError) as err:
        raise UserInputError(f"--model_config_name_or_path {path}: cannot read a JSON config ({err})") from err
    cls = UNet2DConditionModel if conditioning.kind == "text" else UNet2DModel
    where = f"--model_config_name_or_path {file}"
    if isinstance(config, dict):
        config.setdefault("sample_size", resolution)
    check_unet_config(cls, config, where, resolution, tasks.num_channels)
    check_conditioning_fits(config, conditioning, where)
    return cls.from_config(config)


def check_conditioning_fits(config: dict, conditioning, where: str) -> None:
    """The UNet must take the run's condition: as many class embeddings as classes (+ the CFG null class), none
    for unconditional models, the text encoder's width as cross_attention_dim for text models."""
    kind = conditioning.kind
    want_embeds = conditioning.num_classes + int(conditioning.supports_null) if kind == "class" else None
    if config.get("num_class_embeds") != want_embeds or config.get("class_embed_type") is not None:
        raise UserInputError(
            f"{where}: num_class_embeds={config.get('num_class_embeds')} (class_embed_type="
            f"{config.get('class_embed_type')}) but this run needs num_class_embeds={want_embeds}"
        )
    if kind == "text" and config.get("cross_attention_dim") != conditioning.hidden_size:
        raise UserInputError(
            f"{where}: cross_attention_dim={config.get('cross_attention_dim')} but the text encoder's width is "
            f"{conditioning.hidden_size}"
        )


def build_ddpm(args: argparse.Namespace) -> dict:
    """Everything main_ddpm needs, validated: tasks, transform, conditioning, denoiser, metadata."""
    check_ranges(args)
    tasks = load_training_tasks(args)
    height, width = tasks.image_size
    resolution = args.resolution or min(height, width)
    kind = conditioning_kind(args, tasks)
    conditioning, text = build_conditioning(args, tasks, kind)
    unet = build_unet_from_args(args, tasks, conditioning, resolution)
    slot_encoder = conditioning.encoder if kind == "slots" else None  # trains with the UNet, inside the denoiser
    denoiser = make_denoiser(unet, args.energy_score_type if args.energy_based_training else None, slot_encoder)
    transform = ImageTransform(resolution, center_crop=args.center_crop, random_flip=args.random_flip)
    metadata = export_metadata(
        tasks, denoiser, conditioning, prediction_type=prediction_type(args),
        classifier_free_guidance=args.classifier_free_guidance, resolution=resolution,
        validation_prompts=args.validation_prompts, data_path=args.data_path or "bundled:split_digits",
    )  # fmt: skip
    return {
        "tasks": tasks,
        "conditioning": conditioning,
        "text": text,
        "denoiser": denoiser,
        "make_dataset": lambda task: TaskDataset(task, transform),
        "metadata": metadata,
    }


def train_config(args: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    values = {k: getattr(args, k) for k in fields if hasattr(args, k)}
    values["eval_batch_size"] = args.num_samples
    values["validation_scheduler"] = args.scheduler
    values["uncond_p"] = args.uncond_p if args.classifier_free_guidance else 0.0
    values["validation_prompts"] = args.validation_prompts or []
    values["ema_scope"] = args.ema_scope or "task"
    return TrainConfig(**values)
