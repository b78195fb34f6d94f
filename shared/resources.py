"""Folders shipped inside the latentlink package (models, sample images), found with importlib.resources."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["package_folder"]


def package_folder(*parts: str) -> Path:
    """Returns a folder shipped inside the installed package, e.g. package_folder("models", "q4")."""
    # Wheels and editable installs both unpack to real folders, so the resource is a filesystem path.
    return Path(os.fspath(resources.files("latentlink").joinpath(*parts)))
