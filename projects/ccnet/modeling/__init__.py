"""Backbones, heads, losses and meta-architectures. Importing this module registers them."""
