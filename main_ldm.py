#!/usr/bin/env python
"""Continual training of a latent diffusion model (VAE + CLIP text encoder + UNet).

Not implemented yet: it is on the roadmap (README, "Latent diffusion") and will reuse main_ddpm's trainer,
strategies and samplers on VAE latents. Until then this entry point only explains that and exits with code 2, so
scripts fail loudly instead of silently training something else.
"""

from __future__ import annotations

import sys

from continual_diffusers import cli

MESSAGE = (
    "latent diffusion training is not implemented yet (see the README roadmap); "
    "use main_ddpm.py for pixel-space continual training"
)


def main(argv: list[str] | None = None) -> int:
    parser = cli.new_parser(f"Continual latent-diffusion training. {MESSAGE}.")
    parser.parse_args(argv)
    print(f"error: {MESSAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
