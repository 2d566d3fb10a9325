#!/usr/bin/env bash
# CLIP-text-conditioned pixel DDPM on the captioned split CIFAR-10 ("a photo of a {class}").
# Make the data:  python create_cifar10_data_example.py --cifar_dir <folder> --captions --output_dir "${DATA_DIR:-./data}"
# CLIP_PATH: a hub id or a local folder with tokenizer/ and text_encoder/ (Stable-Diffusion layout) or both flat.
set -euo pipefail
DATA_DIR=${DATA_DIR:-./data}
OUTPUT_DIR=${OUTPUT_DIR:-./outputs/ddpm_clip_cifar10}
CLIP_PATH=${CLIP_PATH:-openai/clip-vit-base-patch32}
accelerate launch --num_processes "${NUM_PROCESSES:-1}" main_ddpm.py \
  --data_path "$DATA_DIR/cifar10_captions_tasks_train.npz" \
  --output_dir "$OUTPUT_DIR" \
  --clip_text_pretrained_path "$CLIP_PATH" \
  --validation_prompts "a photo of a airplane" "a photo of a cat" \
  --resolution 32 --random_flip \
  --train_batch_size 64 --num_epochs 50 --learning_rate 1e-4 --lr_warmup_steps 500 \
  --classifier_free_guidance --uncond_p 0.1 --guidance_scale 3 \
  --use_ema --checkpointing_steps 2000 --checkpoints_total_limit 3 \
  --resume_from_checkpoint latest "$@"
