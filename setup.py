"""Packaging for Continual-Diffusers. Metadata lives in pyproject.toml; this file exists for `pip install -e .`
on older pips and for users who expect it."""

from setuptools import setup

setup()
