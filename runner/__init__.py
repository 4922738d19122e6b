"""gitops-runner: a repository-driven batch runner."""

from __future__ import annotations

__version__ = "0.1.0"
