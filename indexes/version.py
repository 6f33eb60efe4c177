"""The code version recorded in every artifact, summary and manifest."""
from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path


@lru_cache(maxsize=1)
def package_version() -> str:
    """Installed shardguard version, or ``0+unknown`` when running from an uninstalled tree."""
    try:
        return metadata.version("shardguard")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The git commit of the source tree the code was loaded from, when it is a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def code_version() -> dict:
    """Package version plus git commit (when known)."""
    return {"package": package_version(), "git_commit": git_commit()}
