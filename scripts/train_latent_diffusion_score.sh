#!/usr/bin/env bash
# Score-based (the scheduler's ε / v prediction) latent diffusion: fine-tune Stable Diffusion's UNet on the captioned
# split CIFAR-10 ("a photo of a {class}", 5 tasks × 2 classes), VAE and CLIP frozen, latents cached per task.
# Make the data:  python create_cifar10_data_example.py --cifar_dir <folder> --captions --output_dir "${DATA_DIR:-./data}"
# SD_MODEL: a hub id or a local folder in the diffusers SD layout. Multi-GPU: NUM_PROCESSES=4 bash scripts/...
# Add --unet_scratch (optionally --model_config_name_or_path small_unet.json) to train a random UNet instead.
set -euo pipefail
DATA_DIR=${DATA_DIR:-./data}
OUTPUT_DIR=${OUTPUT_DIR:-./outputs/ldm_score_cifar10}
SD_MODEL=${SD_MODEL:-CompVis/stable-diffusion-v1-4}
accelerate launch --num_processes "${NUM_PROCESSES:-1}" main_ldm.py \
  --pretrained_model_name_or_path "$SD_MODEL" \
  --data_path "$DATA_DIR/cifar10_captions_tasks_train.npz" \
  --output_dir "$OUTPUT_DIR" \
  --resolution 256 --random_flip --cache_latents \
  --train_batch_size 16 --gradient_accumulation_steps 4 --max_train_steps 2000 \
  --learning_rate 1e-5 --lr_scheduler constant --lr_warmup_steps 0 \
  --uncond_p 0.1 --snr_gamma 5.0 --use_ema --gradient_checkpointing --mixed_precision fp16 \
  --buffer_type reservoir --buffer_size 1000 \
  --validation_prompts "a photo of a airplane" "a photo of a cat" "a photo of a truck" \
  --guidance_scale 7.5 --num_inference_steps 50 --num_samples 4 \
  --checkpointing_steps 1000 --checkpoints_total_limit 2 --resume_from_checkpoint latest "$@"
