#!/usr/bin/env bash
# Compositional generation: "class 2 AND class 3" (product, weight 2 each), then "class 2 AND NOT class 3"
# (negation), with UHA (K = 3, L = 3, γ = 0.4, ε_t = 1e-3·β_t), as in the earlier implementation's script.
# For energy models, CHA (Metropolis-corrected HMC) uses exactly the composed energy.
set -euo pipefail
MODEL_DIR=${MODEL_DIR:-./outputs/ddpm_energy/task_3}
OUTPUT_DIR=${OUTPUT_DIR:-./outputs/composition}
COMMON=(--model_path "$MODEL_DIR" --composition_pipeline --scheduler ddpm --num_inference_steps 1000
        --num_samples 8 --mcmc_sampler UHA --num_samples_per_step 3 --num_leapfrog_steps 3 --damping_coeff 0.4
        --step_sizes_multiplier 0.001 --seed 0)

accelerate launch evaluate.py "${COMMON[@]}" --output_dir "$OUTPUT_DIR/2_and_3" \
    --composition_labels 2,3 --composition_weights 2,2
accelerate launch evaluate.py "${COMMON[@]}" --output_dir "$OUTPUT_DIR/2_not_3" \
    --composition_labels 2,3 --composition_weights=2,-1
