"""Seeded fuzzing of the JSON files a user or an export hands us (slow suite): an export's UNet config, scheduler
config and continual_diffusers.json, a latent export's text-encoder and VAE configs, a `--config` file of
evaluate.py, and an oracle's config.json. Each mutant (a byte flip, a truncation, a key deleted, a value swapped for
a huge, negative, non-finite, nested, long or wrongly typed one) goes through `evaluate.py` (or `load_oracle`) in
one subprocess under RLIMIT_AS = its footprint after imports + 1 GiB, and must either work or be refused with exactly
one `error: …` line (one `UserInputError` line for `load_oracle`): no traceback, no other exception, no crash.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_FLAGS, make_tasks

ROOT = Path(__file__).resolve().parents[1]
SEED = 25
PER_KIND = 60
EVAL_FLAGS = ["--num_inference_steps", "2", "--num_samples", "1"]
HUGE = [10**309, -(10**309), 2**63, -1, 0, 1.5, 1e308]
ODD = ["", "evil", "x" * 10_000, [], {}, None, True, [1] * 10_000]
NON_FINITE = ["NaN", "Infinity", "-Infinity"]  # written as JSON text (Python's json spelling)

pytestmark = pytest.mark.slow


def _swap(text: str, rng: random.Random) -> str:
    """Replace one value (at any depth) by a hostile one, or delete or add a key."""
    data = json.loads(text)
    if not isinstance(data, dict) or not data:
        return text[: rng.randrange(len(text) + 1)]
    holder, key = data, rng.choice(list(data))
    while isinstance(holder[key], (dict, list)) and holder[key] and rng.random() < 0.5:
        holder = holder[key]
        key = rng.choice(list(holder)) if isinstance(holder, dict) else rng.randrange(len(holder))
    move = rng.random()
    if move < 0.1 and isinstance(holder, dict):
        del holder[key]
        return json.dumps(data)
    if move < 0.2 and isinstance(holder, dict):
        key = rng.choice(["_class_name", "extra", "block_out_channels", "seen_tasks", "steps_offset", "width"])
    marker = "__HOSTILE__"
    holder[key] = marker
    if move < 0.35:
        value = rng.choice(NON_FINITE)
    elif move < 0.45:
        depth = rng.choice([50, 200, 5000])
        value = "[" * depth + "]" * depth
    else:
        value = json.dumps(rng.choice(HUGE + ODD))
    return json.dumps(data).replace(json.dumps(marker), value, 1)


def mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.2:  # byte flips
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if kind < 0.3:  # truncation
        return data[: rng.randrange(len(data))]
    return _swap(data.decode(), rng).encode()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from tiny_sd import write_tiny_sd

    import main_ddpm
    import main_ldm
    from continual_diffusers.data import save_tasks
    from continual_diffusers.evaluation.classifier import OracleCNN, save_oracle

    root = tmp_path_factory.mktemp("fuzz_configs")
    tasks, captions = str(root / "tasks.npz"), str(root / "captions.npz")
    save_tasks(tasks, make_tasks("class"))
    save_tasks(captions, make_tasks("text"))
    run = root / "run"
    argv = [*TINY_FLAGS, "--data_path", tasks, "--max_train_steps", "1", "--classifier_free_guidance"]
    assert main_ddpm.main([*argv, "--output_dir", str(run)]) == 0
    sd = write_tiny_sd(str(root / "sd"))
    ldm_flags = ["--train_batch_size", "4", "--num_inference_steps", "2", "--num_samples", "1", "--logger", "none",
                 "--max_train_steps", "1", "--validation_prompts", "digit 0"]  # fmt: skip
    ldm = root / "ldm"
    assert main_ldm.main(["--pretrained_model_name_or_path", sd, "--data_path", captions, *ldm_flags,
                          "--output_dir", str(ldm)]) == 0  # fmt: skip
    oracle = save_oracle(OracleCNN(3, 4, width=8, feature_dim=16), str(root / "oracle"), 8, 0.5)
    flags = root / "flags.json"
    flags.write_text(json.dumps({"seed": 3, "guidance_scale": 2.0, "num_inference_steps": 2, "num_samples": 1,
                                 "scheduler": "ddim", "class_labels": [0, 1], "sampling_batch_size": 4}))  # fmt: skip
    return root, run / "task_2", ldm / "task_2", Path(oracle), flags


# kind: (source folder index in `sources` (1: pixel export, 2: latent export, 3: oracle, 4: the flags file), file)
KINDS = {
    "unet": (1, "unet/config.json"),
    "scheduler": (1, "scheduler/scheduler_config.json"),
    "metadata": (1, "continual_diffusers.json"),
    "text_encoder": (2, "text_encoder/config.json"),
    "vae": (2, "vae/config.json"),
    "oracle": (3, "config.json"),
    "flags": (4, None),
}


def _cases(sources) -> list[dict]:
    root, *originals = sources
    rng, cases = random.Random(SEED), []
    for kind, (index, name) in KINDS.items():
        for i in range(PER_KIND):
            folder = root / "mutants" / f"{kind}_{i}"
            out = root / "outputs" / f"{kind}_{i}"
            source = originals[index - 1]
            if name is None:  # the --config file
                folder.mkdir(parents=True)
                file = folder / "flags.json"
                file.write_bytes(mutate(source.read_bytes(), rng))
                argv = ["--config", file, "--model_path", originals[0], "--output_dir", out]
                cases.append({"id": f"{kind}_{i}", "module": "evaluate", "argv": argv})
                continue
            shutil.copytree(source, folder)
            (folder / name).write_bytes(mutate((folder / name).read_bytes(), rng))
            if kind == "oracle":
                cases.append({"id": f"{kind}_{i}", "module": "continual_diffusers.evaluation.classifier",
                              "function": "load_oracle", "argv": [folder]})  # fmt: skip
            else:
                argv = ["--model_path", folder, "--output_dir", out, *EVAL_FLAGS]
                cases.append({"id": f"{kind}_{i}", "module": "evaluate", "argv": argv})
    for case in cases:
        case["argv"] = [str(a) for a in case["argv"]]
    return cases


def test_mutated_configs_load_or_are_refused_in_one_line(sources):
    root = sources[0]
    cases = _cases(sources)
    spec, results = root / "spec.json", root / "results.jsonl"
    spec.write_text(json.dumps({"cases": cases, "limit_mib": 1024}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "tests" / "hostile_files.py"), str(spec), str(results)]
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    assert proc.returncode == 0 and len(records) == len(cases), (
        f"runner exit {proc.returncode} after {records[-1:]}: {proc.stderr[-3000:]}"
    )
    outcomes, bad = {"loaded": 0, "refused": 0}, []
    for case, record in zip(cases, records):
        error, stderr = record["error"], record["stderr"]
        if "function" in case:
            ok = error is None or (error.startswith("UserInputError: ") and "\n" not in error)
            refused = error is not None
        else:
            errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
            refused = record["code"] == 2
            ok = error is None and record["code"] in (0, 2)
            ok = ok and (
                not refused or (len(errors) == 1 and "Traceback" not in stderr and stderr.rstrip().endswith(errors[0]))
            )
        if not ok or record["seconds"] >= 30:
            bad.append({**record, "stderr": stderr[-500:]})
        outcomes["refused" if refused else "loaded"] += 1
    assert not bad, bad[:5]
    # both outcomes occur: the mutants are neither all harmless nor all rejected by a blanket rule
    assert outcomes["loaded"] >= 20 and outcomes["refused"] >= 200, outcomes
