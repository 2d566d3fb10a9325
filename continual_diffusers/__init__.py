"""Continual-Diffusers: continual learning with diffusion models, built on Hugging Face diffusers.

Nothing happens on import: sub-packages are imported by the code that needs them.
"""

__version__ = "0.2.0.dev0"
__all__ = ["__version__"]
