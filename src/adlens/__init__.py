"""adlens: ad-creative intelligence engine."""

__version__ = "0.1.0"
