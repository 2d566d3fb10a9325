#!/usr/bin/env bash
# Energy-based latent diffusion (EXPERIMENTAL): ε̂ = ∇ₓE with E = ½‖z − f_θ(z, t, c)‖² (dae), trained from a random
# UNet on the captioned split CIFAR-10 latents. Needs ε-prediction; double backward ≈ 3× the score step cost.
# Exports are not stock pipelines (no model_index.json): sample with evaluate.py (--mcmc_sampler MALA/CHA/ULA/UHA).
# Make the data:  python create_cifar10_data_example.py --cifar_dir <folder> --captions --output_dir "${DATA_DIR:-./data}"
set -euo pipefail
DATA_DIR=${DATA_DIR:-./data}
OUTPUT_DIR=${OUTPUT_DIR:-./outputs/ldm_energy_cifar10}
SD_MODEL=${SD_MODEL:-CompVis/stable-diffusion-v1-4}
accelerate launch --num_processes "${NUM_PROCESSES:-1}" main_ldm.py \
  --pretrained_model_name_or_path "$SD_MODEL" \
  --unet_scratch \
  --energy_based_training --energy_score_type dae --prediction_type epsilon \
  --data_path "$DATA_DIR/cifar10_captions_tasks_train.npz" \
  --output_dir "$OUTPUT_DIR" \
  --resolution 256 --random_flip --cache_latents \
  --train_batch_size 16 --max_train_steps 5000 \
  --learning_rate 1e-4 --lr_warmup_steps 500 \
  --uncond_p 0.1 --use_ema \
  --buffer_type reservoir --buffer_size 1000 \
  --validation_prompts "a photo of a airplane" "a photo of a cat" \
  --guidance_scale 3 --num_inference_steps 50 --num_samples 4 \
  --checkpointing_steps 1000 --checkpoints_total_limit 2 --resume_from_checkpoint latest "$@"
