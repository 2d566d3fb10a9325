"""Hostile config files, exports (pixel, and latent with their Stable-Diffusion components: tokenizer, text encoder,
VAE, scheduler), Stable-Diffusion folders, oracles, the report command and Hub ids, through the real entry points:
`main_ddpm.py`, `main_ldm.py`, `evaluate.py`, `python -m continual_diffusers.evaluation report` and
`ContinualDiffusionPipeline.from_pretrained`.

Every case runs in one subprocess under RLIMIT_AS = its address space after the imports + 1 GiB (hostile_files.py)
and must end with exit code 2 and exactly one `error: …` line naming the problem (no traceback; the pipeline: one
`UserInputError` line), in < 30 s, leaving its case folder byte-identical (no output dir created, no report written
into a run dir), with nothing executed (a pickled payload's marker file stays absent). The FIFO cases run in a runner
of their own under a timeout, so a read that blocks fails them instead of hanging the suite.

The cases edit copies of one tiny 2-task pixel run (class-conditional with CFG), one tiny latent run and a tiny
Stable-Diffusion folder, all built once for the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import hostile_files as h
import pytest
from conftest import TINY_FLAGS, make_tasks
from test_hostile_task_files import assert_one_error_line

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 1024
FIFO_TIMEOUT_S = 180
REPORT = "continual_diffusers.evaluation.__main__"
PIPELINE = "continual_diffusers.pipelines"
EVAL_FLAGS = ["--num_inference_steps", "2", "--num_samples", "1"]
LDM_FLAGS = ["--train_batch_size", "4", "--num_inference_steps", "2", "--num_samples", "1", "--logger", "none",
             "--max_train_steps", "1", "--validation_prompts", "digit 0"]  # fmt: skip
GIB_AND_A_HALF = 3 * 2**29
DEEP = 5000  # nesting beyond the JSON parser's recursion limit


@dataclass
class Built:
    root: Path
    tasks: str  # 2 class tasks, 8×8 RGB
    captions: str
    unlabelled: str
    sd: str  # a tiny Stable-Diffusion folder (scheduler with steps_offset=1, T=10)
    run: str  # a main_ddpm output dir with task_1/ and task_2/ (class-conditional, CFG, T=10)
    ldm_export: str  # task_2/ of a main_ldm run
    oracle: str


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    from tiny_sd import write_tiny_sd

    import main_ddpm
    import main_ldm
    from continual_diffusers.data import save_tasks
    from continual_diffusers.evaluation.classifier import OracleCNN, save_oracle

    root = tmp_path_factory.mktemp("hostile_configs")
    files = {kind: str(root / f"{kind}.npz") for kind in ("class", "text", "none")}
    for kind, path in files.items():
        save_tasks(path, make_tasks(kind))
    sd = write_tiny_sd(str(root / "sd"))
    run = root / "run"
    argv = [*TINY_FLAGS, "--data_path", files["class"], "--max_train_steps", "1", "--classifier_free_guidance"]
    assert main_ddpm.main([*argv, "--checkpointing_steps", "0", "--output_dir", str(run)]) == 0
    ldm = root / "ldm"
    argv = ["--pretrained_model_name_or_path", sd, "--data_path", files["text"], *LDM_FLAGS, "--output_dir", str(ldm)]
    assert main_ldm.main([*argv, "--checkpointing_steps", "0"]) == 0
    oracle = save_oracle(OracleCNN(3, 4, width=8, feature_dim=16), str(root / "oracle"), 8, 0.5)
    return Built(root, files["class"], files["text"], files["none"], sd, str(run), str(ldm / "task_2"), oracle)


# ------------------------------------------------------------------------------------------------ file edits
def copy(source: str, case: Path, name: str) -> Path:
    folder = case / name
    shutil.copytree(source, folder)
    return folder


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def drop_key(path: Path, key: str) -> None:
    data = json.loads(path.read_text())
    del data[key]
    path.write_text(json.dumps(data))


def nest_into(path: Path, key: str, depth: int = DEEP) -> None:
    """`key`: a list nested `depth` levels deep (written as text: json.dumps would hit its own recursion limit)."""
    text = json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != key})
    path.write_text(text[:-1] + f', "{key}": ' + "[" * depth + "]" * depth + "}")


def fifo(path: Path) -> None:
    if path.exists():
        path.unlink()
    os.mkfifo(path)


def sparse(path: Path, size: int = GIB_AND_A_HALF) -> None:
    """A file of `size` bytes that takes no disk space (zeros: not JSON either, but refused for its size first)."""
    with open(path, "wb") as fh:
        fh.truncate(size)


def pickled_weights(folder: Path, name: str, marker: Path) -> None:
    """Replace the folder's safetensors weights by a pickle `name` that runs `touch marker` when unpickled."""
    for file in folder.glob("*.safetensors"):
        file.unlink()
    payload = h.PROTO2 + h.call(h.glob("os", "system"), f"touch {marker}") + h.STOP
    (folder / name).write_bytes(payload)


# ------------------------------------------------------------------------------------------------- the cases
@dataclass
class Case:
    """`module.main(argv)` (or `module.<function>(*argv)`) of a case folder `d`; `build(built, d)` makes the files
    and returns the argv. Outputs go to d/out, which must not exist afterwards."""

    id: str
    module: str
    build: object
    expected: str
    fifo: bool = False
    function: str | None = None


def ddpm(*flags):
    return lambda b, d: [*TINY_FLAGS, "--max_train_steps", "1", "--data_path", b.tasks, "--output_dir", d / "out",
                         *flags]  # fmt: skip


def ddpm_with(make):
    """main_ddpm with flags that name a file `make(b, d)` writes."""
    return lambda b, d: ddpm(*make(b, d))(b, d)


def config_file(content, name: str = "flags.json"):
    """--config: a file holding `content` (a dict as JSON, bytes or text as they are; a callable writes it)."""

    def write(b, d) -> list:
        path = d / name
        if callable(content):
            content(path)
        elif isinstance(content, dict):
            path.write_text(json.dumps(content))
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["--config", path]

    return write


def unet_config(change):
    """--model_config_name_or_path: the pixel run's UNet config, changed by `change(path)`."""

    def write(b, d) -> list:
        path = d / "unet.json"
        shutil.copy(Path(b.run) / "task_2" / "unet" / "config.json", path)
        change(path)
        return ["--model_config_name_or_path", path]

    return write


def export(edit, *flags, source: str = "pixel"):
    """evaluate.py on a copy of the pixel run's task_2/ (or the latent run's), edited by `edit(folder, d)`."""

    def argv(b, d) -> list:
        folder = copy(Path(b.run) / "task_2" if source == "pixel" else b.ldm_export, d, "export")
        edit(folder, d)
        return ["--model_path", folder, "--output_dir", d / "out", *EVAL_FLAGS, *flags]

    return argv


def pipeline(edit, source: str = "pixel"):
    def argv(b, d) -> list:
        folder = copy(Path(b.run) / "task_2" if source == "pixel" else b.ldm_export, d, "export")
        edit(folder, d)
        return [str(folder)]

    return argv


def sd_folder(edit, *flags):
    """main_ldm on a copy of the tiny SD folder, edited by `edit(folder, d)`."""

    def argv(b, d) -> list:
        folder = copy(b.sd, d, "sd")
        edit(folder, d)
        return ["--pretrained_model_name_or_path", folder, "--data_path", b.captions, "--output_dir", d / "out",
                *LDM_FLAGS, *flags]  # fmt: skip

    return argv


def oracle(edit):
    """main_ddpm --eval_every_task with a copy of the oracle, edited by `edit(folder, d)`."""

    def argv(b, d) -> list:
        folder = copy(b.oracle, d, "oracle")
        edit(folder, d)
        return ddpm("--eval_every_task", "--test_data_path", b.tasks, "--oracle_path", folder)(b, d)

    return argv


def report(edit, *flags):
    """The report command on a copy of the pixel run whose task_2/ is edited by `edit(task_2, d)`: nothing may be
    written into the run dir (no report/ for task 1 before task 2 is refused)."""

    def argv(b, d) -> list:
        run = copy(b.run, d, "run")
        edit(run / "task_2", d)
        return ["report", "--run_dir", run, "--data_path", b.tasks, "--test_data_path", b.tasks, "--oracle_path",
                b.oracle, "--eval_num_samples", "4", "--num_inference_steps", "2", *flags]  # fmt: skip

    return argv


def resume(edit):
    """main_ddpm resuming from a copy of the pixel run's last checkpoint, edited by `edit(folder, d)`."""

    def argv(b, d) -> list:
        folder = copy(str(sorted(Path(b.run).glob("checkpoint-*"))[-1]), d, "checkpoint")
        edit(folder, d)
        return ddpm("--classifier_free_guidance", "--resume_from_checkpoint", folder)(b, d)

    return argv


def hub(repo_id: str | None, out_name: str = "out"):
    def argv(b, d) -> list:
        flags = ["--push_to_hub", *(["--hub_model_id", repo_id] if repo_id else [])]
        return [*TINY_FLAGS, "--max_train_steps", "1", "--data_path", b.tasks, "--output_dir", d / out_name, *flags]

    return argv


def meta(folder: Path) -> Path:
    return folder / "continual_diffusers.json"


def sched(folder: Path) -> Path:
    return folder / "scheduler" / "scheduler_config.json"


BIG_INT = 10**309  # beyond any float: int → float conversions overflow
NO_FLOAT = f"an integer of {len(str(BIG_INT))} digits"

CONFIG_CASES = [
    Case("config_fifo", "main_ddpm", ddpm_with(config_file(fifo, "fifo.json")), "a FIFO, not a regular file",
         fifo=True),
    Case("config_dev_zero", "evaluate", lambda b, d: ["--config", "/dev/zero", "--model_path",
                                                      Path(b.run) / "task_2", "--output_dir", d / "out"],
         "--config /dev/zero: a character device, not a regular file"),
    Case("config_sparse_1_5_gb", "main_ddpm", ddpm_with(config_file(sparse)), "more than the 16777216 allowed"),
    Case("config_nested", "main_ldm", lambda b, d: [*config_file("[" * 10**5 + "]" * 10**5)(b, d),
                                                    "--pretrained_model_name_or_path", b.sd],
         "not valid JSON (nested deeper than 100 levels)"),
    Case("config_not_utf8", "main_ddpm", ddpm_with(config_file(b'{"data_path": "\xff\xfe"}')), "not UTF-8 text"),
    Case("config_seed_10_309", "evaluate", lambda b, d: [*config_file({"seed": BIG_INT})(b, d), "--model_path",
                                                         Path(b.run) / "task_2", "--output_dir", d / "out"],
         f"seed must be >= 0 and <= 4294967295, got {NO_FLOAT}"),
    Case("config_learning_rate_10_400", "main_ddpm", ddpm_with(config_file({"learning_rate": 10**400})),
         "learning_rate must be > 0 and finite, got inf"),
    Case("config_million_widths", "main_ddpm", lambda b, d: [  # the file's widths, not TINY_FLAGS'
        "--data_path", b.tasks, "--output_dir", d / "out", *config_file({"block_out_channels": [8] * 10**6})(b, d)],
         "--block_out_channels has 1000000 widths"),
    Case("flag_seed_10_309", "main_ddpm", ddpm("--seed", str(BIG_INT)), f"--seed must be >= 0 and <= 4294967295, "
         f"got {NO_FLOAT}"),
    Case("model_config_nan_norm_eps", "main_ddpm", ddpm_with(unet_config(lambda p: edit_json(p, norm_eps=float(
        "nan")))), "norm_eps must be in (0, 1), got nan"),
    Case("model_config_fifo", "main_ddpm", ddpm_with(unet_config(fifo)), "a FIFO, not a regular file", fifo=True),
    Case("model_config_nested", "main_ddpm", ddpm_with(unet_config(lambda p: nest_into(p, "block_out_channels"))),
         "not valid JSON (nested deeper than 100 levels)"),
    Case("model_config_freq_shift_10_309", "main_ddpm", ddpm_with(unet_config(lambda p: edit_json(
        p, freq_shift=BIG_INT))), f"freq_shift must be >= 0 and <= 4096, got {NO_FLOAT}"),
]  # fmt: skip

EXPORT_CASES = [
    Case("export_meta_nested", "evaluate", export(lambda f, d: nest_into(meta(f), "validation_prompts")),
         "continual_diffusers.json: not valid JSON (nested deeper than 100 levels)"),
    Case("export_meta_sparse_1_5_gb", "evaluate", export(lambda f, d: sparse(meta(f))),
         "continual_diffusers.json: 1610612736 bytes, more than the 16777216 allowed"),
    Case("export_meta_fifo", "evaluate", export(lambda f, d: fifo(meta(f))),
         "continual_diffusers.json: a FIFO, not a regular file", fifo=True),
    Case("export_meta_without_seen_tasks", "evaluate", export(lambda f, d: drop_key(meta(f), "seen_tasks")),
         "is not a task model's metadata (no 'seen_tasks' key)"),
    Case("export_meta_classes_10_309", "evaluate", export(lambda f, d: edit_json(meta(f), num_classes=BIG_INT)),
         f"num_classes must be >= 1 and <= 100000, got {NO_FLOAT}"),
    Case("export_unet_nan_norm_eps", "evaluate", export(lambda f, d: edit_json(f / "unet" / "config.json",
                                                                               norm_eps=float("nan"))),
         "unet/config.json: norm_eps must be in (0, 1), got nan"),
    Case("export_unet_million_widths", "evaluate", export(lambda f, d: edit_json(
        f / "unet" / "config.json", block_out_channels=[8] * 10**6)), "block_out_channels has 1000000 entries"),
    Case("export_unet_config_fifo", "evaluate", export(lambda f, d: fifo(f / "unet" / "config.json")),
         "unet/config.json: a FIFO, not a regular file", fifo=True),
    Case("export_unet_weights_fifo", "evaluate", export(lambda f, d: fifo(
        f / "unet" / "diffusion_pytorch_model.safetensors")), "a FIFO, not a regular file", fifo=True),
    Case("export_schedule_spacing", "evaluate", export(lambda f, d: edit_json(sched(f), timestep_spacing="evil")),
         "timestep_spacing must be one of ['linspace', 'leading', 'trailing'], got 'evil'"),
    Case("export_schedule_learned_variance", "evaluate", export(lambda f, d: edit_json(
        sched(f), variance_type="learned")), "variance_type must be one of"),
    Case("export_schedule_offset_huge", "evaluate", export(lambda f, d: edit_json(sched(f), steps_offset=10**6)),
         "steps_offset must be >= 0 and <= 9, got 1000000"),
    Case("export_schedule_offset_past_T", "evaluate", export(lambda f, d: edit_json(sched(f), steps_offset=1),
                                                              "--num_inference_steps", "10", "--scheduler", "ddpm"),
         "with 10 inference steps the ddpm sampler's timesteps reach 10, outside the schedule's 0..9"),
    Case("export_schedule_beta_evil", "evaluate", export(lambda f, d: edit_json(sched(f), beta_schedule="evil")),
         "beta_schedule must be one of"),
    Case("export_schedule_solver_order", "evaluate", export(lambda f, d: edit_json(sched(f), solver_order=10**9)),
         "solver_order must be within ±100000, got 1000000000"),
    Case("export_schedule_algorithm", "evaluate", export(lambda f, d: edit_json(sched(f), algorithm_type="evil")),
         "the dpm++ sampler cannot use this schedule"),
    Case("export_schedule_fifo", "evaluate", export(lambda f, d: fifo(sched(f))),
         "scheduler_config.json: a FIFO, not a regular file", fifo=True),
    Case("pipeline_meta_nested", PIPELINE, pipeline(lambda f, d: nest_into(meta(f), "classes_per_task")),
         "continual_diffusers.json: not valid JSON (nested deeper than 100 levels)",
         function="ContinualDiffusionPipeline.from_pretrained"),
    Case("pipeline_unet_nan_norm_eps", PIPELINE, pipeline(lambda f, d: edit_json(f / "unet" / "config.json",
                                                                                 norm_eps=float("nan"))),
         "norm_eps must be in (0, 1), got nan", function="ContinualDiffusionPipeline.from_pretrained"),
]  # fmt: skip


def _no_max_length(folder: Path, d: Path) -> None:
    drop_key(folder / "tokenizer" / "tokenizer_config.json", "model_max_length")


LATENT_CASES = [
    Case("ldm_tokenizer_not_json", "evaluate", export(lambda f, d: (f / "tokenizer" / "tokenizer.json").write_text(
        "this is not JSON"), source="latent"), "tokenizer/tokenizer.json: not valid JSON"),
    Case("ldm_tokenizer_fifo", "evaluate", export(lambda f, d: fifo(f / "tokenizer" / "tokenizer.json"),
                                                  source="latent"), "a FIFO, not a regular file", fifo=True),
    Case("ldm_tokenizer_unbounded_length", "evaluate", export(_no_max_length, source="latent"),
         "the tokenizer pads prompts to"),
    Case("ldm_text_encoder_wider", "evaluate", export(lambda f, d: edit_json(f / "text_encoder" / "config.json",
                                                                             hidden_size=32), source="latent"),
         "but the config describes [514, 32]; the config and the weights do not belong together"),
    Case("ldm_text_encoder_pickled", "evaluate", export(lambda f, d: pickled_weights(
        f / "text_encoder", "pytorch_model.bin", d / "pwned"), source="latent"),
         "no model.safetensors weights (found pytorch_model.bin: pickled weights are never loaded"),
    Case("ldm_text_encoder_vocab_10_8", "evaluate", export(lambda f, d: edit_json(
        f / "text_encoder" / "config.json", vocab_size=10**8), source="latent"), "vocab_size must be >= 1"),
    Case("ldm_vae_nan_scaling", "evaluate", export(lambda f, d: edit_json(f / "vae" / "config.json",
                                                                          scaling_factor=float("nan")),
                                                   source="latent"), "scaling_factor must be > 0 and finite"),
    Case("ldm_vae_nested_widths", "evaluate", export(lambda f, d: edit_json(
        f / "vae" / "config.json", block_out_channels=json.loads("[" * 20 + "4" + "]" * 20)), source="latent"),
         "vae/config.json: block_out_channels must be >= 1 and <= 4096"),
    Case("ldm_scheduler_beta_evil", "evaluate", export(lambda f, d: edit_json(sched(f), beta_schedule="evil"),
                                                       source="latent"), "beta_schedule must be one of"),
    Case("pipeline_ldm_tokenizer_not_json", PIPELINE, pipeline(lambda f, d: (
        f / "tokenizer" / "tokenizer.json").write_text("{"), source="latent"),
         "tokenizer/tokenizer.json: not valid JSON", function="ContinualDiffusionPipeline.from_pretrained"),
    Case("sd_scheduler_beta_evil", "main_ldm", sd_folder(lambda f, d: edit_json(sched(f), beta_schedule="evil")),
         "beta_schedule must be one of"),
    Case("sd_tokenizer_not_json", "main_ldm", sd_folder(lambda f, d: (f / "tokenizer" / "tokenizer.json").write_text(
        "[1, 2")), "tokenizer/tokenizer.json: not valid JSON"),
    Case("sd_text_encoder_wider", "main_ldm", sd_folder(lambda f, d: edit_json(f / "text_encoder" / "config.json",
                                                                               hidden_size=32)),
         "the config and the weights do not belong together"),
    Case("sd_unet_config_fifo", "main_ldm", sd_folder(lambda f, d: fifo(f / "unet" / "config.json")),
         "unet/config.json: a FIFO, not a regular file", fifo=True),
    Case("sd_offset_past_T", "main_ldm",
         sd_folder(lambda f, d: None, "--num_inference_steps", "10", "--scheduler", "ddpm"),
         "with 10 inference steps the ddpm sampler's timesteps reach 10"),
]  # fmt: skip

ORACLE_REPORT_HUB_CASES = [
    Case("oracle_width_2048", "main_ddpm", oracle(lambda f, d: edit_json(f / "config.json", width=2048)),
         "but the config describes [2048, 3, 3, 3]"),
    Case("oracle_config_nested", "main_ddpm", oracle(lambda f, d: nest_into(f / "config.json", "width")),
         "config.json: not valid JSON (nested deeper than 100 levels)"),
    Case("oracle_config_fifo", "main_ddpm", oracle(lambda f, d: fifo(f / "config.json")),
         "a FIFO, not a regular file", fifo=True),
    Case("oracle_pickled", "main_ddpm", oracle(lambda f, d: pickled_weights(f, "model.bin", d / "pwned")),
         "no model.safetensors weights (found model.bin"),
    Case("ckpt_state_fifo", "main_ddpm", resume(lambda f, d: fifo(f / "training_state.json")),
         "training_state.json: a FIFO, not a regular file", fifo=True),
    Case("ckpt_weights_fifo", "main_ddpm", resume(lambda f, d: fifo(f / "model.safetensors")),
         "model.safetensors: a FIFO, not a regular file", fifo=True),
    Case("ckpt_state_nested", "main_ddpm", resume(lambda f, d: nest_into(f / "training_state.json", "seen_tasks")),
         "training_state.json: not valid JSON (nested deeper than 100 levels)"),
    Case("eval_every_task_unlabelled", "main_ddpm", lambda b, d: ddpm("--eval_every_task", "--test_data_path",
                                                                      b.unlabelled)(b, d),
         "--eval_every_task trains an oracle classifier on class labels, but --test_data_path has no labels"),
    Case("report_task_2_not_json", REPORT, report(lambda t, d: meta(t).write_text('{"conditioning": "class"')),
         "task_2/continual_diffusers.json: not valid JSON"),
    Case("report_task_2_nan_norm_eps", REPORT, report(lambda t, d: edit_json(t / "unet" / "config.json",
                                                                             norm_eps=float("nan"))),
         "task_2/unet/config.json: norm_eps must be in (0, 1), got nan"),
    Case("report_task_2_offset_past_T", REPORT, report(lambda t, d: edit_json(sched(t), steps_offset=1),
                                                       "--num_inference_steps", "10", "--scheduler", "ddpm"),
         "task_2/scheduler: with 10 inference steps the ddpm sampler's timesteps reach 10"),
    Case("hub_double_dash", "main_ddpm", hub("user/a--b"), "--hub_model_id is not a Hub repo id: Cannot have --"),
    Case("hub_120_characters", "main_ddpm", hub("user/" + "a" * 120), "--hub_model_id is not a Hub repo id"),
    Case("hub_dash_dot", "main_ddpm", hub("user/-name."), "--hub_model_id is not a Hub repo id"),
    Case("hub_default_name", "main_ddpm", hub(None, "-name."), "--output_dir's folder name (the default"),
]  # fmt: skip

CASES = CONFIG_CASES + EXPORT_CASES + LATENT_CASES + ORACLE_REPORT_HUB_CASES


# ------------------------------------------------------------------------------------------------ the runners
def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` with its content hash (FIFOs and sparse giants by their metadata, unread)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_size < 2**26:
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[str(path.relative_to(folder))] = f"{stat.S_IFMT(info.st_mode)}:{info.st_size}"
    return out


def _run(built: Built, cases: list[Case], name: str, timeout: int):
    root = built.root / name
    folders, runs = {}, []
    for case in cases:
        d = root / case.id
        d.mkdir(parents=True)
        argv = [str(a) for a in case.build(built, d)]
        folders[case.id] = (d, snapshot(d))
        runs.append({"id": case.id, "module": case.module, "argv": argv,
                     **({"function": case.function} if case.function else {})})  # fmt: skip
    spec, results = root / "spec.json", root / "results.jsonl"
    spec.write_text(json.dumps({"cases": runs, "limit_mib": LIMIT_MIB}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "tests" / "hostile_files.py"), str(spec), str(results)]
    try:
        proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        status = f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout} s (a read blocked)"
    records = {r["id"]: r for r in map(json.loads, results.read_text().splitlines())} if results.exists() else {}
    return status, records, folders


@pytest.fixture(scope="module")
def runs(built):
    """All regular cases in one memory-limited subprocess, the FIFO cases in another under a timeout."""
    regular = _run(built, [c for c in CASES if not c.fifo], "regular", 600)
    fifos = _run(built, [c for c in CASES if c.fifo], "fifo", FIFO_TIMEOUT_S)
    return {False: regular, True: fifos}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_in_one_line(runs, case):
    status, records, folders = runs[case.fifo]
    assert case.id in records, f"no result: {status}"
    record, (folder, before) = records[case.id], folders[case.id]
    if case.function:  # a library entry point: one UserInputError, one line
        assert record["error"] is not None and record["error"].startswith("UserInputError: "), record
        assert "\n" not in record["error"] and case.expected in record["error"], record
    else:
        assert record["error"] is None and record["code"] == 2, record
        assert_one_error_line(record["stderr"], case.expected)
    assert record["seconds"] < 30, record
    assert snapshot(folder) == before, "the case folder changed (an output dir was created or a file written)"
    assert not (folder / "pwned").exists()


def test_corpus_size():
    """Config files, pixel and latent exports (each SD component), SD folders, oracles, report and Hub ids."""
    assert len(CASES) >= 30
    assert sum(c.fifo for c in CASES) >= 6
    for prefix in ("config_", "model_config_", "export_", "pipeline_", "ldm_", "sd_", "oracle_", "report_", "hub_",
                   "ckpt_"):  # fmt: skip
        assert sum(c.id.startswith(prefix) for c in CASES) >= 2, prefix
    for component in ("tokenizer", "text_encoder", "vae", "scheduler"):
        assert any(c.id.startswith("ldm_" + component) for c in CASES), component


def test_the_untouched_inputs_run(built, tmp_path):
    """Control: the folders the cases edit work unedited (so each case is refused for its edit)."""
    import evaluate
    from continual_diffusers.data import load_tasks
    from continual_diffusers.evaluation.oracle import load_checked_oracle

    for model in (Path(built.run) / "task_2", built.ldm_export):
        assert evaluate.main(["--model_path", str(model), "--output_dir", str(tmp_path / Path(model).parent.name),
                              *EVAL_FLAGS]) == 0  # fmt: skip
    load_checked_oracle(built.oracle, load_tasks(built.tasks))
