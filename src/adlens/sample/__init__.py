"""Synthetic, deterministic demo corpus (``adlens sample``): see :mod:`adlens.sample.corpus`."""

from adlens.sample.corpus import AD_SIZES, HASH_KINDS, make_sample, render_creative

__all__ = ["make_sample", "render_creative", "HASH_KINDS", "AD_SIZES"]
