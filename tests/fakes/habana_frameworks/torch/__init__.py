"""Fake ``habana_frameworks.torch``."""
