#!/usr/bin/env bash
# Score-based (ε-prediction) class-conditional DDPM on split CIFAR-10 (5 tasks × 2 classes), CFG on.
# Make the data first:  python create_cifar10_data_example.py --cifar_dir <folder> --output_dir "${DATA_DIR:-./data}"
# Multi-GPU: NUM_PROCESSES=4 bash scripts/train_ddpm_score.sh
set -euo pipefail
DATA_DIR=${DATA_DIR:-./data}
OUTPUT_DIR=${OUTPUT_DIR:-./outputs/ddpm_score_cifar10}
accelerate launch --num_processes "${NUM_PROCESSES:-1}" main_ddpm.py \
  --data_path "$DATA_DIR/cifar10_tasks_train.npz" \
  --output_dir "$OUTPUT_DIR" \
  --resolution 32 --random_flip \
  --train_batch_size 128 --num_epochs 50 \
  --learning_rate 2e-4 --lr_warmup_steps 500 \
  --ddpm_num_steps 1000 --ddpm_beta_schedule squaredcos_cap_v2 \
  --classifier_free_guidance --uncond_p 0.1 --guidance_scale 3 \
  --use_ema --checkpointing_steps 2000 --checkpoints_total_limit 3 \
  --resume_from_checkpoint latest "$@"
