"""evaluate.py on a tiny trained model: samples on disk, label handling, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_FLAGS

import evaluate
import main_ddpm


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import make_tasks

    from continual_diffusers.data import save_tasks

    root = tmp_path_factory.mktemp("eval")
    data = str(root / "tasks.npz")
    save_tasks(data, make_tasks("class"))
    out = root / "run"
    assert (
        main_ddpm.main(
            [
                str(a)
                for a in [
                    "--data_path",
                    data,
                    "--output_dir",
                    out,
                    "--max_train_steps",
                    1,
                    *TINY_FLAGS,
                    "--classifier_free_guidance",
                    "--use_ema",
                ]
            ]
        )
        == 0
    )
    return out


def test_samples_every_seen_class_by_default(trained, tmp_path):
    out = tmp_path / "eval"
    argv = [
        "--model_path",
        trained / "task_2",
        "--output_dir",
        out,
        "--num_samples",
        3,
        "--num_inference_steps",
        2,
        "--guidance_scale",
        3,
    ]
    assert evaluate.main([str(a) for a in argv]) == 0
    saved = np.load(out / "samples.npz", allow_pickle=False)
    assert saved["images"].shape == (12, 8, 8, 3) and saved["images"].dtype == np.uint8
    assert list(saved["labels"]) == [str(c) for c in (0, 1, 2, 3) for _ in range(3)]
    assert (out / "samples.png").is_file() and len(list((out / "samples").glob("*.png"))) == 12


def test_same_seed_same_samples(trained, tmp_path):
    runs = []
    for name in ("a", "b"):
        argv = [
            "--model_path",
            trained / "task_1",
            "--output_dir",
            tmp_path / name,
            "--num_samples",
            2,
            "--num_inference_steps",
            2,
            "--class_labels",
            1,
            "--scheduler",
            "ddpm",
        ]
        assert evaluate.main([str(a) for a in argv]) == 0
        runs.append(np.load(tmp_path / name / "samples.npz")["images"])
    assert np.array_equal(*runs)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--class_labels", "7"], "out of range"),
        (["--guidance_scale", "-2"], "--guidance_scale must be >= 0"),
        (["--num_samples", "0"], "--num_samples must be >= 1"),
    ],
)
def test_bad_sampling_flags(trained, tmp_path, capsys, flags, message):
    assert evaluate.main([str(a) for a in ["--model_path", trained / "task_2", "--output_dir", tmp_path, *flags]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_not_a_task_folder(tmp_path, capsys):
    assert evaluate.main(["--model_path", str(tmp_path)]) == 2
    assert "not an exported task model" in capsys.readouterr().err


# --------------------------------------------------------------------- every sampler × {score, energy} × {class, text}
@pytest.fixture(scope="module")
def models(tmp_path_factory, trained, tiny_clip_dir):
    """Tiny CFG checkpoints: score/energy × class/text (the class score model is `trained`)."""
    from conftest import make_tasks

    from continual_diffusers.data import save_tasks

    root = tmp_path_factory.mktemp("matrix")
    out = {("score", "class"): trained / "task_2"}
    for kind in ("class", "text"):
        data = str(root / f"{kind}.npz")
        save_tasks(data, make_tasks(kind, num_tasks=1))
        for objective in ("score", "energy") if kind == "text" else ("energy",):
            run_dir = root / f"{objective}_{kind}"
            argv = [
                "--data_path",
                data,
                "--output_dir",
                run_dir,
                "--max_train_steps",
                1,
                *TINY_FLAGS,
                "--classifier_free_guidance",
                "--checkpointing_steps",
                0,
            ]
            argv += ["--energy_based_training"] if objective == "energy" else []
            if kind == "text":
                argv += ["--clip_text_pretrained_path", tiny_clip_dir, "--validation_prompts", "digit 0"]
            assert main_ddpm.main([str(a) for a in argv]) == 0
            out[(objective, kind)] = run_dir / "task_1"
    return out


MCMC_FLAGS = [
    "--num_samples",
    1,
    "--num_inference_steps",
    2,
    "--scheduler",
    "ddpm",
    "--num_samples_per_step",
    1,
    "--num_leapfrog_steps",
    2,
    "--mcmc_sampler_start_timestep",
    0,
]


@pytest.mark.parametrize("kind", ["class", "text"])
@pytest.mark.parametrize("objective", ["score", "energy"])
@pytest.mark.parametrize("sampler", ["ULA", "MALA", "UHA", "CHA"])
def test_every_sampler_model_and_conditioning(models, tmp_path, capsys, sampler, objective, kind):
    import json

    out = tmp_path / "eval"
    argv = ["--model_path", models[(objective, kind)], "--output_dir", out, "--mcmc_sampler", sampler, *MCMC_FLAGS]
    argv += ["--validation_prompts", "digit 0", "digit 1"] if kind == "text" else ["--class_labels", 0, 1]
    code = evaluate.main([str(a) for a in argv])
    if objective == "score" and sampler in ("MALA", "CHA"):
        assert code == 2 and "needs an energy model" in capsys.readouterr().err
        return
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["mcmc"]["sampler"] == sampler and record["seed"] == 0 and record["num_images"] == 2
    rates = record["acceptance_rate_per_timestep"]
    assert sorted(rates, key=int) == ["0", "5"] and all(0 <= r <= 1 for r in rates.values())
    assert np.load(out / "samples.npz")["images"].shape == (2, 8, 8, 3) and (out / "samples.png").is_file()


@pytest.mark.parametrize(
    "objective, kind, flags",
    [
        ("score", "class", ["--composition_labels", "0,3", "--composition_weights=2,-1", "--mcmc_sampler", "ULA"]),
        ("energy", "class", ["--composition_labels", "0,1", "--mcmc_sampler", "CHA"]),
        (
            "energy",
            "class",
            ["--composition_labels", "0,1", "--composition_mode", "mixture", "--mcmc_sampler", "MALA"],
        ),
        ("score", "text", ["--composition_labels", "digit 0|digit 1", "--mcmc_sampler", "UHA"]),
        ("energy", "text", ["--composition_labels", "digit 0|digit 1", "--composition_weights", "1,2"]),
    ],
)
def test_composition_runs(models, tmp_path, objective, kind, flags):
    import json

    out = tmp_path / "eval"
    argv = [
        "--model_path",
        models[(objective, kind)],
        "--output_dir",
        out,
        "--composition_pipeline",
        *MCMC_FLAGS,
        "--num_samples",
        2,
        *flags,
    ]
    assert evaluate.main([str(a) for a in argv]) == 0
    record = json.loads((out / "run.json").read_text())
    assert len(record["composition"]["labels"]) == 2 and len(record["rows"]) == 1
    assert np.load(out / "samples.npz")["images"].shape == (2, 8, 8, 3)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--composition_pipeline", "--composition_labels", "1,9"], "out of range"),
        (["--composition_pipeline"], "needs --composition_labels"),
        (["--composition_pipeline", "--composition_labels", "0,1", "--composition_weights", "1"], "1 values for 2"),
        (["--composition_pipeline", "--composition_labels", "0,1", "--composition_mode", "mixture"], "energy model"),
        (["--mcmc_sampler", "CHA"], "needs an energy model"),
        (["--damping_coeff", "2"], "--damping_coeff must be in [0, 1]"),
        (["--step_sizes_multiplier", "0"], "--step_sizes_multiplier must be > 0"),
    ],
)
def test_bad_mcmc_and_composition_flags(trained, tmp_path, capsys, flags, message):
    argv = ["--model_path", trained / "task_2", "--output_dir", tmp_path, *flags]
    assert evaluate.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_unknown_sampler_is_an_argparse_error(trained, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--model_path", str(trained / "task_2"), "--mcmc_sampler", "XYZ"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_mcmc_window_above_the_schedule_is_refused(models, tmp_path, capsys):
    flags = [str(f) for f in MCMC_FLAGS[:-2]]  # keep the default start timestep (50) on a 10-step model
    argv = ["--model_path", str(models[("score", "class")]), "--output_dir", str(tmp_path), "--mcmc_sampler", "ULA"]
    assert evaluate.main([*argv, *flags, "--class_labels", "0"]) == 2
    assert "MCMC would never run" in capsys.readouterr().err
