#!/usr/bin/env bash
# Ancestral sampling from an exported task model: 8 images per seen class, CFG scale 5, 1000 DDPM steps
# (the earlier implementation's setting), then the same with 25 DPM-Solver++ steps.
# MODEL_DIR is an exported task folder written by main_ddpm.py (output_dir/task_<k>).
set -euo pipefail
MODEL_DIR=${MODEL_DIR:-./outputs/ddpm/task_5}
OUTPUT_DIR=${OUTPUT_DIR:-./outputs/samples}

accelerate launch evaluate.py --model_path "$MODEL_DIR" --output_dir "$OUTPUT_DIR/ddpm1000" \
    --scheduler ddpm --num_inference_steps 1000 --guidance_scale 5 --num_samples 8 --seed 0
accelerate launch evaluate.py --model_path "$MODEL_DIR" --output_dir "$OUTPUT_DIR/dpm25" \
    --scheduler dpm++ --num_inference_steps 25 --guidance_scale 5 --num_samples 8 --seed 0
