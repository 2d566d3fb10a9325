"""Slot-conditioned diffusion on the synthetic shapes tasks (CPU): segmentation quality of the slot attention,
reconstruction from slots versus an unconditional model, and a composition sheet.

    python benchmarks/bench_slots.py --output_dir outputs/bench_slots            # ≈ 15 min on 2 free CPU cores

1. writes the shapes data (16×16, 2 tasks: squares, then circles; 1-3 objects, distinct colours, object masks);
2. trains a slot model (--conditioning slots: sampled initial slots, the auxiliary broadcast-decoder loss, CFG) and
   an unconditional model of the same UNet widths with main_ddpm, the same budget, one task after the other with
   buffer replay (128 images): the ordinary continual loop, and the model keeps task 1's squares for the
   compositions;
3. on the test images of both tasks, after task 2 (EMA weights):
   - FG-ARI of the slot attention masks (argmax over slots) against the ground-truth object masks;
   - reconstruction MSE in [-1, 1]² per pixel: a sample conditioned on a test image's slots vs that image, against
     an unconditional sample vs the same image, and against another random test image (the data's own spread);
   - composition: samples from A's background + A's objects + B's objects (A from task 1, B from task 2, objects
     apart) against the ideal composite (A with B's objects pasted in from the true masks), compared with samples
     from A's own slots (which lack B's objects);
4. writes slot_masks.png (image | segmentation | per-slot masks), reconstructions.png (image | 4 samples from its
   slots) and compositions.png (per row: image A, image B, then 4 compositions), and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import main_ddpm  # noqa: E402
from continual_diffusers.data import ImageTransform, load_tasks  # noqa: E402
from continual_diffusers.data.shapes import load_masks, masks_path, write_shapes  # noqa: E402
from continual_diffusers.evaluation.slot_modes import _concat_conditions, save_sheet  # noqa: E402
from continual_diffusers.evaluation.slots import attention_sheet, encode_slots, fg_ari  # noqa: E402
from continual_diffusers.pipelines.loading import load_task_model  # noqa: E402
from continual_diffusers.sampling.generate import SamplerOptions, generate_samples  # noqa: E402
from continual_diffusers.utils.images import save_grid  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="outputs/bench_slots")
    p.add_argument("--steps_per_task", type=int, default=600)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--slot_dim", type=int, default=16, help="a narrow slot cannot hold a whole scene")
    p.add_argument("--prediction_type", default="sample", help="x₀ prediction: the loss asks for the image itself")
    p.add_argument(
        "--snr_gamma",
        type=float,
        default=1e-4,
        help="x₀ loss weight min(SNR_t, γ): a tiny γ makes it ≈ uniform over t, so the high-noise steps, where only "
        "the slots tell the image, weigh as much as the others",
    )
    p.add_argument("--num_train", type=int, default=512, help="training images per task")
    p.add_argument("--num_test", type=int, default=64, help="test images per task (FG-ARI over all of them)")
    p.add_argument("--num_recon", type=int, default=16, help="test images per task reconstructed")
    p.add_argument("--num_inference_steps", type=int, default=50, help="DDIM steps of every sample")
    p.add_argument("--guidance_scale", type=float, default=1.0, help="CFG scale of reconstructions/compositions")
    p.add_argument("--skip_unconditional", action="store_true", help="train only the slot model")
    p.add_argument("--buffer_size", type=int, default=128, help="replay buffer (task 1's squares during task 2)")
    p.add_argument("--eval_only", action="store_true", help="evaluate the models already in --output_dir")
    p.add_argument("--slot_init", choices=["sampled", "learned"], default="sampled")
    p.add_argument("--slot_pixel_tokens", action="store_true", help="append pixel values to the slot encoder's tokens")
    p.add_argument("--slot_iters", type=int, default=3)
    p.add_argument("--slot_decoder_weight", type=float, default=1.0, help="λ of the auxiliary broadcast decoder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="evaluation device")
    return p.parse_args(argv)


def train(args, data: str, out: str, conditioning: list[str]) -> float:
    argv = [
        "--data_path", data, "--output_dir", out, "--resolution", "16", "--seed", str(args.seed),
        "--max_train_steps", str(args.steps_per_task), "--train_batch_size", str(args.batch_size),
        "--learning_rate", str(args.learning_rate), "--lr_warmup_steps", "50",
        "--lr_scheduler", "constant_with_warmup", "--adam_beta1", "0.9",
        "--block_out_channels", "16", "32", "32", "--norm_num_groups", "8",
        "--use_ema", "--checkpointing_steps", "0", "--logger", "none", "--num_samples", "4",
        "--num_inference_steps", "20", "--prediction_type", args.prediction_type, "--snr_gamma", str(args.snr_gamma),
        "--buffer_type", "reservoir", "--buffer_size", str(args.buffer_size),
        *conditioning,
    ]  # fmt: skip
    start = time.perf_counter()
    if main_ddpm.main(argv) != 0:
        raise SystemExit(f"training {out} failed")
    return time.perf_counter() - start


def test_images(data: str, resolution: int) -> tuple[torch.Tensor, np.ndarray]:
    tasks = load_tasks(data)
    masks = load_masks(masks_path(data), tasks)
    transform = ImageTransform(resolution)
    images = torch.cat([transform(transform.prepare(t.images)) for t in tasks])
    return images, np.concatenate([masks[t.task_id] for t in tasks])


def sample(model, conditioning, scheduler, labels: list, args) -> torch.Tensor:
    options = SamplerOptions("ddim", args.num_inference_steps, args.guidance_scale, batch_size=64, seed=args.seed)
    return generate_samples(model, conditioning, scheduler, labels, options, args.device).cpu()


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean())


def evaluate(args, slot_dir: str, uncond_dir: str | None, test_data: str) -> dict:
    model, conditioning, scheduler, spec = load_task_model(slot_dir, device=args.device)
    images, masks = test_images(test_data, spec.resolution)
    slots, attention = encode_slots(conditioning, images)
    scores = fg_ari(masks, attention.numpy())
    per_task = len(images) // 2
    results = {
        "fg_ari": float(np.nanmean(scores)),
        "fg_ari_task_1": float(np.nanmean(scores[:per_task])),
        "fg_ari_task_2": float(np.nanmean(scores[per_task:])),
    }
    save_sheet(attention_sheet(images[:12], attention[:12]), os.path.join(args.output_dir, "slot_masks.png"))
    # Reconstruction: the first num_recon test images of each task.
    pick = [i for start in (0, per_task) for i in range(start, start + args.num_recon)]
    targets = images[pick]
    recon = sample(model, conditioning, scheduler, [slots[i] for i in pick], args)
    results["mse_slots"] = mse(recon, targets)
    generator = torch.Generator().manual_seed(args.seed)
    others = images[torch.randperm(len(images), generator=generator)[: len(pick)]]
    results["mse_random_test_image"] = mse(others, targets)
    if uncond_dir is not None:
        u_model, u_cond, u_sched, _ = load_task_model(uncond_dir, device=args.device)
        results["mse_unconditional"] = mse(sample(u_model, u_cond, u_sched, [None] * len(pick), args), targets)
    rows = torch.cat([torch.cat([targets[i : i + 1], recon[i : i + 1]]) for i in range(0, len(pick), 2)])
    save_grid(rows, os.path.join(args.output_dir, "reconstructions.png"), nrow=8, min_size=512)
    results.update(compose(args, model, conditioning, scheduler, images, masks, slots, attention, per_task))
    return results


def compose(args, model, conditioning, scheduler, images, masks, slots, attention, per_task: int, num_rows=6) -> dict:
    """Rows: image A (task 1: squares), image B (task 2: circles), then 4 samples from A's background slot + A's
    object slots + B's object slots. Pairs are taken in order among those whose objects fit the K slots and do not
    overlap, so the ideal composition is known: A with B's object pixels pasted in (from the true masks). Returns
    the MSE of the compositions to that composite, against samples from A's own slots (which lack B's objects)."""
    from continual_diffusers.evaluation.slots import background_slot, object_slots

    backgrounds = [background_slot(a, image) for a, image in zip(attention, images)]
    objects = [object_slots(a, image) for a, image in zip(attention, images)]
    num_slots, pairs, used = slots.shape[1], [], set()
    for a in range(per_task):
        for b in range(per_task, len(images)):
            fits = 1 + len(objects[a]) + len(objects[b]) <= num_slots and objects[a] and objects[b]
            apart = not ((masks[a] > 0) & (masks[b] > 0)).any()
            if a not in used and b not in used and fits and apart:
                pairs.append((a, b))
                used.update((a, b))
                break
        if len(pairs) == num_rows:
            break
    indices = list(range(len(images)))
    conditions = [
        _concat_conditions([(a, [backgrounds[a], *objects[a]]), (b, objects[b])], slots, attention, images, indices)
        for a, b in pairs
    ]
    per_pair = 4
    samples = sample(model, conditioning, scheduler, [c for c in conditions for _ in range(per_pair)], args)
    own = sample(model, conditioning, scheduler, [slots[a] for a, _ in pairs for _ in range(per_pair)], args)
    composites = torch.stack(
        [torch.where(torch.from_numpy(masks[b] > 0), images[b], images[a]) for a, b in pairs]
    ).repeat_interleave(per_pair, 0)
    products = torch.cat(
        [product(args, model, conditioning, scheduler, slots[a], slots[b], per_pair) for a, b in pairs]
    )
    for name, sheet in (("compositions.png", samples), ("compositions_product.png", products)):
        rows = []
        for n, (a, b) in enumerate(pairs):
            rows += [images[a : a + 1], images[b : b + 1], sheet[per_pair * n : per_pair * (n + 1)]]
        save_grid(torch.cat(rows), os.path.join(args.output_dir, name), nrow=6, min_size=512)
    # The whole-image MSE is dominated by the black background; also score B's object pixels (did B's objects
    # appear, in their colour?) and A's (did A's objects survive?), from the true masks.
    region = {
        "b_objects": torch.stack([torch.from_numpy(masks[b] > 0) for _, b in pairs]),
        "a_objects": torch.stack([torch.from_numpy(masks[a] > 0) for a, _ in pairs]),
    }
    record = {"composition_pairs": len(pairs)}
    for name, sheet in (("composition", samples), ("product", products), ("a_slots", own)):
        record[f"mse_{name}_vs_composite"] = mse(sheet, composites)
        for where, mask in region.items():
            mask = mask.repeat_interleave(per_pair, 0)[:, None].expand_as(sheet)
            record[f"mse_{name}_on_{where}"] = float((sheet - composites)[mask].pow(2).mean())
    return record


def product(args, model, conditioning, scheduler, slots_a, slots_b, num: int) -> torch.Tensor:
    """`num` samples of the product of A's and B's whole slot sets, ε = ε_A + ε_B − ε_∅ (Liu et al. 2022)."""
    import dataclasses

    from continual_diffusers.sampling.generate import CompositionOptions, generate

    options = SamplerOptions("ddim", args.num_inference_steps, 1.0, batch_size=64, seed=args.seed)
    options = dataclasses.replace(options, composition=CompositionOptions((slots_a, slots_b), (1.0, 1.0), "product"))
    return generate(model, conditioning, scheduler, [slots_a] * num, options, args.device).images().cpu()


def main(argv=None) -> None:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    train_data, test_data = (str(p) for p in write_shapes(
        os.path.join(args.output_dir, "data"), args.num_train, args.num_test, num_tasks=2, resolution=16,
        num_objects=(1, 3), size_range=(4, 6), seed=args.seed,
    ))  # fmt: skip
    times = {}
    slot_flags = ["--conditioning", "slots", "--num_slots", "4", "--slot_dim", str(args.slot_dim),
                  "--slot_iters", str(args.slot_iters), "--slot_init", args.slot_init,
                  "--classifier_free_guidance", "--uncond_p", "0.1"]  # fmt: skip
    slot_flags += ["--slot_decoder_weight", str(args.slot_decoder_weight)]
    slot_flags += ["--slot_pixel_tokens"] if args.slot_pixel_tokens else []
    slot_out = os.path.join(args.output_dir, "slots")
    uncond_out = None if args.skip_unconditional else os.path.join(args.output_dir, "unconditional")
    if not args.eval_only:
        times["train_slots_s"] = train(args, train_data, slot_out, slot_flags)
        if uncond_out is not None:
            times["train_unconditional_s"] = train(args, train_data, uncond_out, ["--conditioning", "none"])
    start = time.perf_counter()
    results = evaluate(args, os.path.join(slot_out, "task_2"), uncond_out and os.path.join(uncond_out, "task_2"),
                       test_data)  # fmt: skip
    times["evaluate_s"] = time.perf_counter() - start
    record = {**results, **{k: round(v, 1) for k, v in times.items()}, "steps_per_task": args.steps_per_task}
    with open(os.path.join(args.output_dir, "results.json"), "w") as fh:
        json.dump(record, fh, indent=2)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
