"""Model cards (README.md with YAML front matter) in every task_k/ and the run dir, and --push_to_hub through
huggingface_hub, offline against a local stand-in for the Hub API."""

from __future__ import annotations

import fnmatch
import os

import pytest
import yaml
from conftest import TINY_FLAGS

import main_ddpm
from continual_diffusers.evaluation import EndOfTaskEvaluation
from continual_diffusers.models.spec import ModelSpec
from continual_diffusers.training.hub import HUB_IGNORE, push_to_hub
from continual_diffusers.training.model_card import model_card
from continual_diffusers.utils.errors import RunError


def front_matter(path) -> tuple[dict, str]:
    text = open(path).read()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


class FakeHub:
    """Records what `HfApi` would have done; `fail` makes the upload raise like a network error."""

    calls: list = []
    fail = False

    def __init__(self, *args, **kwargs):
        pass

    def create_repo(self, repo_id, exist_ok=False, private=None, **kwargs):
        FakeHub.calls.append(("create_repo", repo_id, exist_ok, private))
        return type("RepoUrl", (), {"repo_id": repo_id if "/" in repo_id else f"me/{repo_id}"})()

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):
        if FakeHub.fail:
            raise OSError("connection refused\nmore detail")
        files = []
        for root, _, names in os.walk(folder_path):
            for name in names:
                rel = os.path.relpath(os.path.join(root, name), folder_path)
                if not any(fnmatch.fnmatch(rel, p) for p in ignore_patterns or []):
                    files.append(rel)
        FakeHub.calls.append(("upload_folder", repo_id, sorted(files)))


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeHub.calls, FakeHub.fail = [], False
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    return FakeHub


def _train(task_file, out, *flags) -> int:
    argv = ["--data_path", task_file(), "--output_dir", out, "--max_train_steps", 1, *TINY_FLAGS, *flags]
    return main_ddpm.main([str(a) for a in argv])


def test_cards_parse_as_yaml_front_matter(tmp_path, task_file, fake_hub):
    from huggingface_hub import ModelCard

    out = tmp_path / "run"
    assert _train(task_file, out, "--classifier_free_guidance", "--use_ema", "--push_to_hub") == 0
    for k, classes in ((1, [0, 1]), (2, [0, 1, 2, 3])):
        meta, body = front_matter(out / f"task_{k}" / "README.md")
        assert meta["library_name"] == "diffusers" and "continual-learning" in meta["tags"]
        assert meta["tasks_seen"] == list(range(1, k + 1)) and meta["classes_seen"] == classes
        assert meta["training_config"]["strategy"] == "naive" and meta["training_config"]["use_ema"] is True
        assert meta["training_config"]["validation"]["num_inference_steps"] == 2  # the end-of-task sampler
        assert meta["model_config"]["classifier_free_guidance"] is True
        assert meta["license"] == "apache-2.0" and meta["datasets"] == ["tasks_class.npz"]  # from config.json
        assert "ContinualDiffusionPipeline.from_pretrained" in body and "class_labels" in body
        assert ModelCard.load(out / f"task_{k}" / "README.md").data.library_name == "diffusers"
    run_meta, run_body = front_matter(out / "README.md")
    assert run_meta["tasks_seen"] == [1, 2] and "subfolder" in run_body
    # --push_to_hub: the repo named after the output dir, the run without its checkpoints
    (create, name, exist_ok, private), (upload, repo, files) = fake_hub.calls
    assert (create, name, exist_ok, private, upload, repo) == (
        "create_repo",
        "run",
        True,
        None,
        "upload_folder",
        "me/run",
    )
    assert "README.md" in files and "task_2/unet/config.json" in files and "task_2/model_index.json" in files
    assert "config.json" in files and not [f for f in files if f.startswith("checkpoint-")]


def test_card_lists_the_metrics_so_far():
    per_task = {"1": [0, 1], "2": [2, 3]}
    meta = {"conditioning": "class", "num_classes": 4, "resolution": 8, "in_channels": 3, "seen_tasks": [1, 2]}
    spec = ModelSpec.from_json({**meta, "classes_per_task": per_task}, "metadata")
    history = [{"after_task": 1, "metrics": {"accuracy": {"1": 0.5}}}]
    history.append({"after_task": 2, "metrics": {"accuracy": {"1": 0.25, "2": 0.75}}})
    card = model_card(spec, {"strategy": "replay", "learning_rate": 1e-4}, history, task_id=2)
    head, body = card[4:].split("\n---\n", 1)
    data = yaml.safe_load(head)
    assert data["continual_metrics"] == history and data["classes_per_task"] == {"1": [0, 1], "2": [2, 3]}
    assert "| 2 | accuracy | 1: 0.25, 2: 0.75 |" in body and "strategy-replay" in data["tags"]
    history.append({"after_task": 3, "metrics": {"frechet": {"1": 12.5}}})  # named as the evaluation names it
    card = model_card(spec, {"strategy": "replay"}, history, metric_name=EndOfTaskEvaluation.display_name)
    assert "| 3 | oracle-feature FID | 1: 12.5 |" in card


def test_card_has_license_datasets_rounded_metrics_and_a_model_index(tmp_path):
    """license and datasets fields, metrics rounded to 4 significant digits, and the latest evaluation in the
    Hub's model-index form (parsed back by huggingface_hub, offline)."""
    from huggingface_hub import ModelCard

    from continual_diffusers.training.model_card import run_datasets

    per_task = {"1": [0, 1], "2": [2, 3]}
    meta = {"conditioning": "class", "num_classes": 4, "resolution": 8, "in_channels": 3, "seen_tasks": [1, 2]}
    spec = ModelSpec.from_json({**meta, "classes_per_task": per_task}, "metadata")
    history = [{"after_task": 2, "metrics": {"accuracy": {"1": 0.123456789, "2": 0.75}, "num_real": {"1": 8.0}}}]
    (tmp_path / "config.json").write_text('{"args": {"data_path": "/data/mine/own_tasks.npz"}}')
    assert run_datasets(str(tmp_path)) == ["own_tasks.npz"]
    card = model_card(spec, {"strategy": "replay"}, history, 2, datasets=["own_tasks.npz"], run_name="own")
    data = yaml.safe_load(card[4:].split("\n---\n", 1)[0])
    assert data["license"] == "apache-2.0" and data["datasets"] == ["own_tasks.npz"]
    assert data["continual_metrics"][0]["metrics"]["accuracy"]["1"] == 0.1235
    parsed = ModelCard(card).data
    assert parsed.model_name == "own/task_2"
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in parsed.eval_results}
    assert results == {("task 1", "accuracy"): 0.1235, ("task 2", "accuracy"): 0.75}  # sample sizes are no metric
    assert "1: 0.1235, 2: 0.75" in card
    (tmp_path / "config.json").write_text('{"args": {"data_path": null}}')
    assert run_datasets(str(tmp_path)) == ["scikit-learn digits (bundled)"]
    assert run_datasets(str(tmp_path / "none")) == []


def test_push_to_hub_function_and_its_failure(tmp_path):
    (tmp_path / "task_1").mkdir()
    (tmp_path / "task_1" / "README.md").write_text("card")
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "model.safetensors").write_text("x")
    FakeHub.calls, FakeHub.fail = [], False
    assert push_to_hub(str(tmp_path), "user/model", private=True, api=FakeHub()) == "user/model"
    assert FakeHub.calls == [
        ("create_repo", "user/model", True, True),
        ("upload_folder", "user/model", ["task_1/README.md"]),
    ]
    assert "checkpoint-*" in HUB_IGNORE
    FakeHub.fail = True
    with pytest.raises(RunError, match="push to the Hub repo user/model failed .connection refused.; the run"):
        push_to_hub(str(tmp_path), "user/model", api=FakeHub())


def test_hub_flags_are_checked_before_training(tmp_path, task_file, fake_hub, capsys):
    out = tmp_path / "run"
    assert _train(task_file, out, "--hub_model_id", "user/x") == 2
    assert "--hub_model_id / --hub_private_repo need --push_to_hub" in capsys.readouterr().err
    assert _train(task_file, out, "--push_to_hub", "--hub_model_id", "a/b/c") == 2
    assert "--hub_model_id is not a Hub repo id" in capsys.readouterr().err
    assert not out.exists() and fake_hub.calls == []
