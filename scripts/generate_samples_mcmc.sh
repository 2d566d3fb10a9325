#!/usr/bin/env bash
# Annealed MCMC inside the DDPM loop (the earlier implementation's settings): ULA with 10 kernel steps per noise
# level and η_t = 1.5e-4·β_t, MCMC at t ≥ 50; MALA (energy models only) likewise; UHA with K = 3, L = 3, γ = 0.4,
# ε_t = 1e-3·β_t. The acceptance rate per timestep is written to $OUTPUT_DIR/<sampler>/run.json.
set -euo pipefail
MODEL_DIR=${MODEL_DIR:-./outputs/ddpm_energy/task_5}
OUTPUT_DIR=${OUTPUT_DIR:-./outputs/samples_mcmc}
COMMON=(--model_path "$MODEL_DIR" --scheduler ddpm --num_inference_steps 1000 --guidance_scale 5 --num_samples 8
        --mcmc_sampler_start_timestep 50 --seed 0)

accelerate launch evaluate.py "${COMMON[@]}" --output_dir "$OUTPUT_DIR/ula" \
    --mcmc_sampler ULA --num_samples_per_step 10 --step_sizes_multiplier 0.00015
accelerate launch evaluate.py "${COMMON[@]}" --output_dir "$OUTPUT_DIR/mala" \
    --mcmc_sampler MALA --num_samples_per_step 10 --step_sizes_multiplier 0.00015
accelerate launch evaluate.py "${COMMON[@]}" --output_dir "$OUTPUT_DIR/uha" \
    --mcmc_sampler UHA --num_samples_per_step 3 --num_leapfrog_steps 3 --damping_coeff 0.4 --step_sizes_multiplier 0.001
