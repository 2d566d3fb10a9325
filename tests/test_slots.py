"""Slot attention conditioning: the module's symmetries, gradients end to end, CFG's null slot set, FG-ARI, the
shapes data, a 2-task slot run (EWC + replay + EMA + CFG) that exports, reloads and resumes exactly, and
evaluate.py's slot modes (masks + FG-ARI, reconstruction, concat and product composition with MCMC)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_FLAGS
from safetensors.torch import load_file

import evaluate
import main_ddpm
from continual_diffusers.data import load_tasks
from continual_diffusers.data.__main__ import main as data_main
from continual_diffusers.data.shapes import COLOURS, load_masks, make_shapes_tasks, masks_path
from continual_diffusers.evaluation.slots import (
    background_slot,
    compose_slot_set,
    fg_ari,
    foreground_mask,
    object_slots,
)
from continual_diffusers.models.conditioning import SlotConditioning
from continual_diffusers.models.denoiser import make_denoiser
from continual_diffusers.models.slots import GRUCell, SlotAttention, SlotEncoder
from continual_diffusers.models.unet import UNetSpec, build_unet
from continual_diffusers.objectives import DenoisingObjective

SLOT_FLAGS = ["--conditioning", "slots", "--num_slots", 3, "--slot_dim", 8, "--slot_iters", 2]
SLOT_FLAGS += ["--slot_encoder_channels", 8]


def _slot_attention(seed: int = 0) -> SlotAttention:
    torch.manual_seed(seed)
    return SlotAttention(input_dim=6, slot_dim=8, num_iterations=3).double()


# ------------------------------------------------------------------------------------------- slot attention maths
def test_slot_attention_is_equivariant_to_slot_permutations():
    module = _slot_attention()
    inputs, slots = torch.randn(2, 10, 6).double(), torch.randn(2, 4, 8).double()
    perm = torch.tensor([2, 0, 3, 1])
    out, attn = module(inputs, slots)
    out_p, attn_p = module(inputs, slots[:, perm])
    torch.testing.assert_close(out_p, out[:, perm])
    torch.testing.assert_close(attn_p, attn[:, perm])


def test_slot_attention_is_invariant_to_input_order_and_normalised_over_slots():
    module = _slot_attention()
    inputs, slots = torch.randn(2, 10, 6).double(), torch.randn(2, 4, 8).double()
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    out, attn = module(inputs, slots)
    out_p, attn_p = module(inputs[:, perm], slots)
    torch.testing.assert_close(out_p, out)
    torch.testing.assert_close(attn_p, attn[:, :, perm])  # each input's assignment travels with it
    torch.testing.assert_close(attn.sum(1), torch.ones(2, 10).double())  # softmax over the slots


def test_gru_cell_matches_torch_gru_cell():
    torch.manual_seed(0)
    ours, ref = GRUCell(5, 7), torch.nn.GRUCell(5, 7)
    with torch.no_grad():
        ours.ih.weight.copy_(ref.weight_ih), ours.ih.bias.copy_(ref.bias_ih)
        ours.hh.weight.copy_(ref.weight_hh), ours.hh.bias.copy_(ref.bias_hh)
    x, h = torch.randn(3, 5), torch.randn(3, 7)
    torch.testing.assert_close(ours(x, h), ref(x, h))


def _tiny_slot_denoiser(null: bool = True):
    torch.manual_seed(0)
    encoder = SlotEncoder(3, 8, num_slots=3, slot_dim=8, num_iterations=2, hidden_channels=8, null_slots=null)
    spec = UNetSpec(8, 3, "slots", cross_attention_dim=8, block_out_channels=(8, 16), norm_num_groups=4)
    return make_denoiser(build_unet(spec), None, encoder), SlotConditioning(encoder)


def test_gradients_reach_every_slot_encoder_parameter():
    from diffusers import DDPMScheduler

    model, conditioning = _tiny_slot_denoiser()
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    cond = conditioning.drop(conditioning.encode(x0, "cpu"), torch.tensor([True, True, True, False]))
    out = DenoisingObjective(DDPMScheduler(num_train_timesteps=10), "epsilon")(model, x0, cond)
    assert out.prediction.shape == x0.shape
    out.loss.mean().backward()
    for name, p in model.slot_encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name  # CNN, slot attention, initial and null slots


def test_energy_slot_model_trains_the_encoder_through_the_double_backward():
    from diffusers import DDPMScheduler

    from continual_diffusers.models.denoiser import EnergyModel

    score, conditioning = _tiny_slot_denoiser()
    model = EnergyModel(score.unet, "dae", score.slot_encoder)
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    out = DenoisingObjective(DDPMScheduler(num_train_timesteps=10), "epsilon")(
        model, x0, conditioning.encode(x0, "cpu")
    )
    assert out.energy.shape == (2,)
    out.loss.mean().backward()
    assert model.slot_encoder.slots_init.grad.abs().sum() > 0


def test_dropped_rows_get_the_null_slot_set_and_slots_pass_through():
    model, conditioning = _tiny_slot_denoiser()
    model.eval()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 5])
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    dropped = model(x, t, **conditioning.drop(conditioning.encode(images, "cpu"), torch.tensor([False, True])))
    null = model(x, t, **conditioning.null(2, "cpu")).prediction
    slots = conditioning.slots(images).slots
    given = model(x, t, **conditioning.encode(list(slots), "cpu")).prediction
    torch.testing.assert_close(dropped.prediction[0], null[0])
    torch.testing.assert_close(dropped.prediction[1], given[1])
    torch.testing.assert_close(model(x, t).prediction, null)  # no condition: the unconditional (null) branch


def test_clear_errors():
    model, conditioning = _tiny_slot_denoiser(null=False)
    with pytest.raises(Exception, match="without classifier-free guidance"):
        conditioning.null(2, "cpu")
    with pytest.raises(Exception, match="not on Tensor labels|not on list labels"):
        conditioning.encode([0, 1], "cpu")
    with pytest.raises(Exception, match=r"\(B, 3, 8, 8\)"):
        conditioning.slots(torch.zeros(1, 3, 16, 16))


# ------------------------------------------------------------------------ sampled initial slots, auxiliary decoder
def _encoder(**kw) -> SlotEncoder:
    torch.manual_seed(0)
    return SlotEncoder(3, 8, num_slots=3, slot_dim=8, num_iterations=2, hidden_channels=8, **kw)


def test_sampled_initial_slots_are_fresh_in_training_and_fixed_in_eval(tmp_path):
    encoder = _encoder(slot_init="sampled")
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    init = encoder.initial_slots(2)
    assert init.shape == (2, 3, 8) and not torch.equal(init[0], init[1])  # one draw per image
    assert not torch.equal(encoder(images).slots, encoder(images).slots)  # and per call
    encoder.eval()
    first = encoder(images).slots
    torch.testing.assert_close(encoder(images).slots, first)
    # s⁰ = μ + σ ⊙ ξ with the config-seeded ξ: the same after a save / load round trip.
    expected = encoder.slots_mu + encoder.slots_log_sigma.exp() * encoder.eval_noise
    torch.testing.assert_close(encoder.initial_slots(1)[0], expected)
    encoder.save_pretrained(tmp_path)
    torch.testing.assert_close(SlotEncoder.from_pretrained(tmp_path).eval()(images).slots, first)


def test_pixel_tokens_widen_the_tokens_by_the_image_channels():
    encoder = _encoder(pixel_tokens=True)
    assert encoder.slot_attention.to_k.in_features == 8 + 3
    assert encoder(torch.zeros(1, 3, 8, 8)).slots.shape == (1, 3, 8)


def test_broadcast_decoder_is_a_mixture_of_per_slot_images():
    from continual_diffusers.models.slots import SpatialBroadcastDecoder

    torch.manual_seed(0)
    decoder = SpatialBroadcastDecoder(slot_dim=8, out_channels=3, resolution=8, hidden_channels=8).double()
    slots = torch.randn(2, 4, 8).double()
    image, masks = decoder(slots)
    assert image.shape == (2, 3, 8, 8) and masks.shape == (2, 4, 8, 8)
    torch.testing.assert_close(masks.sum(1), torch.ones(2, 8, 8).double())
    # Slot k alone (broadcast, position-embedded, convolved) gives its own colours and logit: recompute the mixture.
    per_slot = [
        decoder.net(decoder.position(s.view(1, 1, 1, 8).expand(1, 8, 8, 8)).permute(0, 3, 1, 2)) for s in slots[0]
    ]
    logits = torch.cat([o[:, -1:] for o in per_slot], dim=1)  # (1, K, H, W)
    mixture = sum(m * o[:, :-1] for m, o in zip(logits.softmax(1).unbind(1), per_slot))
    torch.testing.assert_close(image[:1], mixture)
    # Slots are a set: permuting them permutes the masks and leaves the image unchanged.
    perm = torch.tensor([3, 1, 0, 2])
    image_p, masks_p = decoder(slots[:, perm])
    torch.testing.assert_close(image_p, image)
    torch.testing.assert_close(masks_p, masks[:, perm])


def test_objective_adds_the_weighted_decoder_loss_once():
    from diffusers import DDPMScheduler

    encoder = _encoder(slot_init="sampled", decoder_loss_weight=0.5)
    spec = UNetSpec(8, 3, "slots", cross_attention_dim=8, block_out_channels=(8, 16), norm_num_groups=4)
    model, conditioning = make_denoiser(build_unet(spec), None, encoder), SlotConditioning(encoder)
    objective = DenoisingObjective(DDPMScheduler(num_train_timesteps=10), "epsilon")
    x0 = torch.rand(3, 3, 8, 8) * 2 - 1
    cond = conditioning.encode(x0, "cpu")
    torch.manual_seed(1)
    out = objective(model, x0, cond, torch.Generator().manual_seed(0))
    # Recompute both terms from the same draws: the slot init (global RNG) and t, ε (the generator).
    torch.manual_seed(1)
    slots, _, decoder_loss = encoder(x0)
    decoder_term = 0.5 * (encoder.decoder(slots)[0] - x0).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(decoder_loss, decoder_term)  # the encoder's output carries it, weighted
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(x0.shape, generator=g), torch.randint(0, 10, (3,), generator=g)
    eps = model.unet(out.x_t, t, encoder_hidden_states=slots).sample
    torch.testing.assert_close(out.loss, (eps - noise).pow(2).flatten(1).mean(1) + decoder_term)
    torch.manual_seed(1)  # no state between forwards: the same draws give the same loss, added once
    torch.testing.assert_close(objective(model, x0, cond, torch.Generator().manual_seed(0)).loss, out.loss)
    out.loss.mean().backward()
    assert all(p.grad is not None for p in encoder.decoder.parameters())
    assert model(out.x_t, t, **cond).auxiliary_loss is not None  # a training forward returns it
    model.eval()  # sampling / EWC's Fisher (eval mode): no decoder loss
    with torch.no_grad():
        assert model(out.x_t, t, **cond).auxiliary_loss is None


# ---------------------------------------------------------------------------------------------------- FG-ARI
def _pairs(x: np.ndarray) -> np.ndarray:
    return x * (x - 1) / 2.0


def reference_ari(true_ids, pred_ids) -> float:
    """The hand-written ARI fg_ari used before scikit-learn's (kept as the reference): with n_ij the contingency
    table, a_i, b_j its row / column sums and C(m) = m(m − 1)/2, index = Σ C(n_ij), expected = Σ C(a_i)·Σ C(b_j) /
    C(n), max = (Σ C(a_i) + Σ C(b_j)) / 2, ARI = (index − expected) / (max − expected), 1 when max = expected."""
    true_ids, pred_ids = np.asarray(true_ids).ravel(), np.asarray(pred_ids).ravel()
    _, t = np.unique(true_ids, return_inverse=True)
    _, p = np.unique(pred_ids, return_inverse=True)
    table = np.zeros((t.max(initial=-1) + 1, p.max(initial=-1) + 1))
    np.add.at(table, (t, p), 1)
    index = _pairs(table).sum()
    sum_a, sum_b = _pairs(table.sum(1)).sum(), _pairs(table.sum(0)).sum()
    total = _pairs(np.float64(true_ids.size))
    expected = sum_a * sum_b / total if total > 0 else 0.0
    maximum = (sum_a + sum_b) / 2.0
    if np.isclose(maximum, expected):
        return 1.0
    return float((index - expected) / (maximum - expected))


def _fg_ari_reference(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.array([reference_ari(t[t > 0], p[t > 0]) if (t > 0).any() else np.nan for t, p in zip(truth, pred)])


def test_fg_ari_hand_computed_cases():
    # true {1,1,2,2} vs pred {0,0,1,2}: index 1, expected 2·1/6, max 3/2 → ARI = (2/3)/(7/6) = 4/7.
    truth = np.array([[[0, 1, 1], [2, 2, 0]]])
    assert fg_ari(truth, np.array([[[9, 0, 0], [1, 2, 9]]]))[0] == pytest.approx(4 / 7)
    assert fg_ari(truth, np.array([[[0, 5, 5], [9, 9, 1]]]))[0] == pytest.approx(1.0)  # renaming
    one = np.array([[[1, 1, 1]]])
    assert fg_ari(one, np.array([[[4, 4, 4]]]))[0] == 1.0  # both one segment (degenerate case)
    assert fg_ari(np.array([[[0, 3]]]), np.array([[[1, 2]]]))[0] == 1.0  # a single foreground pixel


def test_fg_ari_equals_the_former_hand_written_ari_on_random_masks():
    rng = np.random.default_rng(0)
    for objects, segments in ((1, 1), (2, 3), (4, 3), (5, 7), (3, 1)):
        truth = rng.integers(0, objects + 1, (6, 8, 8))  # 0: background
        truth[0] = 0  # an image without foreground: NaN in both
        pred = rng.integers(0, segments, (6, 8, 8))
        pred[1] = truth[1] * 3 + 1  # a perfect (renamed) segmentation
        ours, reference = fg_ari(truth, pred), _fg_ari_reference(truth, pred)
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)
        assert np.isnan(ours[0]) and ours[1] == pytest.approx(1.0)
        soft = np.eye(pred.max() + 1)[pred].transpose(0, 3, 1, 2)  # (B, K, H, W) one-hot
        np.testing.assert_allclose(fg_ari(truth, soft), reference, rtol=1e-12, atol=1e-12)


def test_fg_ari_ignores_the_background_and_takes_the_argmax_of_soft_masks():
    truth = np.array([[[0, 1, 1], [0, 2, 2], [0, 0, 0]]])
    pred = np.array([[[3, 0, 0], [1, 2, 2], [1, 1, 1]]])  # objects right (renamed), background split arbitrarily
    assert fg_ari(truth, pred)[0] == pytest.approx(1.0)
    soft = np.eye(4)[pred].transpose(0, 3, 1, 2)  # (B, K, H, W) one-hot
    assert fg_ari(truth, soft)[0] == pytest.approx(1.0)
    merged = np.array([[[0, 5, 5], [0, 5, 5], [0, 0, 0]]])  # both objects in one segment: chance level
    assert fg_ari(truth, merged)[0] == pytest.approx(0.0)
    assert np.isnan(fg_ari(np.zeros((1, 3, 3), int), pred)[0])  # no foreground: undefined


# ------------------------------------------------------------------------------------------------- shapes data
def test_shapes_tasks_have_consistent_masks_and_differ_by_shape():
    tasks, masks = make_shapes_tasks(num_tasks=2, num_per_task=20, resolution=16, num_objects=(2, 3), seed=3)
    for task in tasks:
        m = masks[task.task_id]
        assert m.shape == task.images.shape[:3] and task.labels is None
        assert np.array_equal(m > 0, task.images.max(-1) > 0)  # every lit pixel belongs to an object, and back
        for image, mask in zip(task.images, m):
            ids = [i for i in np.unique(mask) if i]
            assert 2 <= len(ids) <= 3
            colours = {tuple(image[mask == i][0]) for i in ids}
            assert len(colours) == len(ids) and colours <= set(COLOURS.values())  # one distinct colour each
    square = masks[1][0] > 0  # task 1 draws squares only: every object fills its bounding box
    assert square.sum() > 0
    again, _ = make_shapes_tasks(num_tasks=2, num_per_task=20, resolution=16, num_objects=(2, 3), seed=3)
    assert np.array_equal(again[2].images, tasks[2].images)  # seeded


def test_shapes_cli_writes_task_files_with_masks(tmp_path, capsys):
    argv = ["shapes", "--output_dir", str(tmp_path), "--num_train", "6", "--num_test", "3", "--split", "colour"]
    assert data_main(argv) == 0
    tasks = load_tasks(tmp_path / "shapes_tasks_train.npz")
    masks = load_masks(masks_path(tmp_path / "shapes_tasks_train.npz"), tasks)
    assert sorted(masks) == [1, 2] and masks[1].shape == (6, 16, 16)
    assert data_main(["shapes", "--output_dir", str(tmp_path), "--num_tasks", "9"]) == 2
    assert "at most 4 tasks" in capsys.readouterr().err


# ------------------------------------------------------------------------------ training, export, resume, eval
@pytest.fixture(scope="module")
def slot_run(tmp_path_factory):
    """2 tasks × 4 steps of a slot model with EWC + replay + EMA + CFG, checkpoint every 3 steps."""
    root = tmp_path_factory.mktemp("slots")
    data_main(["shapes", "--output_dir", str(root), "--num_train", "8", "--num_test", "4", "--resolution", "8",
               "--max_objects", "2", "--min_size", "3", "--max_size", "3"])  # fmt: skip
    data = root / "shapes_tasks_train.npz"
    common = [
        "--data_path", data, "--max_train_steps", 4, "--checkpointing_steps", 3, "--use_ema",
        "--classifier_free_guidance", "--uncond_p", 0.5, "--ewc_loss", "--num_samples_ewc", 4,
        "--buffer_type", "reservoir", "--buffer_size", 4, *SLOT_FLAGS, *TINY_FLAGS,
    ]  # fmt: skip
    common = [str(a) for a in common]
    assert main_ddpm.main([*common, "--output_dir", str(root / "run")]) == 0
    return root, common


def test_slot_run_exports_reloadable_slot_encoders(slot_run):
    from continual_diffusers.pipelines.loading import load_task_model

    root, _ = slot_run
    task_dir = root / "run" / "task_2"
    for sub in ("unet", "unet_training", "slot_encoder", "slot_encoder_training"):  # unet/ + slot_encoder/: EMA
        assert (task_dir / sub).is_dir(), sub
    # End-of-task samples: one row per reference image (2 per seen task), the image then its reconstruction.
    from PIL import Image

    for k, rows in ((1, 2), (2, 4)):
        png = Image.open(root / "run" / f"task_{k}" / "samples.png")
        # rows × (the image + eval_batch_size 1 sample) cells of 8 px + 1 px padding, upscaled by an integer factor
        assert png.height * (2 * 9 + 1) == png.width * (rows * 9 + 1)
    meta = json.loads((task_dir / "continual_diffusers.json").read_text())
    assert meta["conditioning"] == "slots" and meta["slots"] == {"num_slots": 3, "slot_dim": 8, "num_iterations": 2}
    ema_model, conditioning, _, _ = load_task_model(str(task_dir))
    raw_model, _, _, _ = load_task_model(str(task_dir), use_ema=False)
    assert conditioning.encoder is ema_model.slot_encoder and conditioning.supports_null
    differs = [
        not torch.equal(a, b) for a, b in zip(ema_model.slot_encoder.parameters(), raw_model.slot_encoder.parameters())
    ]
    assert any(differs)  # the EMA averaged the slot encoder too
    state = load_file(root / "run" / "checkpoint-8" / "model.safetensors")
    assert any(k.startswith("slot_encoder.slot_attention.") for k in state)
    strategy = load_file(root / "run" / "checkpoint-8" / "strategy.safetensors")
    assert any(k.startswith("ewc.fisher.1.slot_encoder.") or ".slot_encoder." in k for k in strategy)  # EWC covers it


def test_slot_run_resumes_exactly(slot_run):
    root, common = slot_run
    resumed = root / "resumed"
    shutil.copytree(root / "run", resumed)
    for name in ("checkpoint-8", "task_2"):
        shutil.rmtree(resumed / name)
    assert main_ddpm.main([*common, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"]) == 0
    a = load_file(root / "run" / "checkpoint-8" / "model.safetensors")
    b = load_file(resumed / "checkpoint-8" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_generative_replay_oracle_evaluation_and_no_cfg_are_refused(slot_run, capsys):
    root, common = slot_run
    no_cfg = [a for a in common if a != "--classifier_free_guidance"]
    cases = (
        ([*common, "--strategy", "generative_replay"], "generative replay is not available"),
        ([*common, "--eval_every_task"], "evaluate.py --slot_mode"),
        (no_cfg, "needs --classifier_free_guidance"),
    )
    for argv, needle in cases:
        assert main_ddpm.main([*argv, "--output_dir", str(root / "refused")]) == 2
        assert needle in capsys.readouterr().err
    assert not (root / "refused").exists()


def test_evaluate_slot_modes(slot_run):
    root, _ = slot_run
    task_dir, data = root / "run" / "task_2", root / "shapes_tasks_test.npz"
    base = ["--model_path", str(task_dir), "--slot_data", str(data), "--num_inference_steps", "2",
            "--num_samples", "2", "--no_progress"]  # fmt: skip

    def run(mode: str, *extra) -> dict:
        out = root / f"eval_{mode}_{len(extra)}"
        assert evaluate.main([*base, "--slot_mode", mode, "--output_dir", str(out), *extra]) == 0
        assert any(out.glob("*.png"))  # the sheet
        return json.loads((out / "run.json").read_text())

    record = run("masks", "--slot_images", "0", "1", "2")
    assert 0.0 <= record["fg_ari"] <= 1.0 and len(record["fg_ari_per_image"]) == 3
    record = run("reconstruct", "--slot_images", "0", "1")
    assert len(record["mse_per_image"]) == 2 and record["mse"] > 0
    record = run("compose", "--compose_slots", "0:1", "1:0")
    assert record["num_slots_composed"] == 3  # padded to K = 3 with image 0's least used slot
    out = root / "eval_too_many"
    argv = [*base, "--slot_mode", "compose", "--compose_slots", "0:0,1,2", "1:0", "--output_dir", str(out)]
    assert evaluate.main(argv) == 2  # 4 slots > K: guidance cannot batch them with the 3 null slots
    assert evaluate.main([*argv, "--guidance_scale", "1"]) == 0
    record = run("compose", "--compose_slots", "0", "1", "--slot_composition", "product", "--mcmc_sampler", "ULA",
                 "--mcmc_sampler_start_timestep", "0", "--scheduler", "ddpm")  # fmt: skip
    assert record["weights"] == [2.0, 2.0] and record["mcmc"] == "ULA"


def test_composition_helpers():
    slots = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    assert torch.equal(
        compose_slot_set(slots, [(0, [2]), (1, [0, 1])]), torch.stack([slots[0, 2], slots[1, 0], slots[1, 1]])
    )
    with pytest.raises(ValueError, match="out of range"):
        compose_slot_set(slots, [(0, [3])])
    # A 6×6 black canvas with a red 2×2 object; slot 0 wins columns 0-3 of the canvas (20 pixels), slot 1 columns
    # 4-5 (12) and one object pixel, slot 2 the other 3 object pixels, slot 3 nothing.
    image = -torch.ones(3, 6, 6)
    image[0, 2:4, 2:4] = 1.0
    owner = torch.zeros(6, 6, dtype=torch.long)
    owner[:, 4:] = 1
    owner[2:4, 2:4] = 2
    owner[3, 3] = 1
    attention = torch.nn.functional.one_hot(owner, 4).permute(2, 0, 1).float()
    assert foreground_mask(image).sum() == 4
    assert background_slot(attention, image) == 0
    assert object_slots(attention, image) == [2]  # slot 1 wins 1 object pixel (< min_pixels 2), slot 3 none
    assert object_slots(attention, image, min_pixels=1) == [1, 2]
