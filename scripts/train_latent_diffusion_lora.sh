#!/usr/bin/env bash
# Per-task LoRA on Stable Diffusion: base UNet, VAE and CLIP frozen; task k trains a new rank-8 adapter on top of the
# frozen adapters of tasks 1..k-1 (--lora_mode stacked; "isolated" trains one expert per task).
# task_k/unet/ holds the merged model (StableDiffusionPipeline.from_pretrained(task_k) works); the adapters are in
# task_k/lora/task_<j>/pytorch_lora_weights.safetensors (pipe.load_lora_weights(..., adapter_name="task_<j>")).
# Make the data:  python create_cifar10_data_example.py --cifar_dir <folder> --captions --output_dir "${DATA_DIR:-./data}"
set -euo pipefail
DATA_DIR=${DATA_DIR:-./data}
OUTPUT_DIR=${OUTPUT_DIR:-./outputs/ldm_lora_cifar10}
SD_MODEL=${SD_MODEL:-CompVis/stable-diffusion-v1-4}
accelerate launch --num_processes "${NUM_PROCESSES:-1}" main_ldm.py \
  --pretrained_model_name_or_path "$SD_MODEL" \
  --lora_rank 8 --lora_mode stacked \
  --data_path "$DATA_DIR/cifar10_captions_tasks_train.npz" \
  --output_dir "$OUTPUT_DIR" \
  --resolution 256 --random_flip --cache_latents \
  --train_batch_size 16 --max_train_steps 1500 \
  --learning_rate 1e-4 --lr_scheduler constant --lr_warmup_steps 0 \
  --uncond_p 0.1 --mixed_precision fp16 \
  --validation_prompts "a photo of a airplane" "a photo of a cat" "a photo of a truck" \
  --guidance_scale 7.5 --num_inference_steps 50 --num_samples 4 \
  --checkpointing_steps 500 --checkpoints_total_limit 2 --resume_from_checkpoint latest "$@"
