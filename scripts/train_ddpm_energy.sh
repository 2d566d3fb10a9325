#!/usr/bin/env bash
# Energy-based DDPM (ε̂ = ∇ₓE, double backward) on split CIFAR-10; --energy_score_type dae (E=½‖x−f‖²) or l2.
# Energy training costs ≈2–3× a score step; see benchmarks/bench_training.py.
set -euo pipefail
DATA_DIR=${DATA_DIR:-./data}
OUTPUT_DIR=${OUTPUT_DIR:-./outputs/ddpm_energy_cifar10}
accelerate launch --num_processes "${NUM_PROCESSES:-1}" main_ddpm.py \
  --data_path "$DATA_DIR/cifar10_tasks_train.npz" \
  --output_dir "$OUTPUT_DIR" \
  --resolution 32 --random_flip \
  --train_batch_size 64 --num_epochs 50 \
  --learning_rate 1e-4 --lr_warmup_steps 500 --clip_grad_norm 1.0 \
  --ddpm_num_steps 1000 --ddpm_beta_schedule squaredcos_cap_v2 \
  --energy_based_training --energy_score_type "${ENERGY_TYPE:-dae}" \
  --classifier_free_guidance --uncond_p 0.1 --guidance_scale 3 \
  --use_ema --checkpointing_steps 2000 --checkpoints_total_limit 3 \
  --resume_from_checkpoint latest "$@"
