"""The ``latentmcmc`` command line: ``train``, ``refine``, ``diagnose`` and ``demo`` (typer)."""

from .app import app, main

__all__ = ["app", "main"]
