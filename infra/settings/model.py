"""Settings of the model: K-Means training, PCA and the registry's versions."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from infra.settings.component import Component


class ModelSettings(Component):
    """Model settings: see each field's description."""

    model_dir: Path | None = Field(None, description="Model registry directory; default <data_dir>/models.")
    model_k: int = Field(16, ge=2, description="Default number of K-Means clusters.")
    model_pca_variance: float = Field(0.9, gt=0, le=1, description="Share of variance the PCA step keeps.")
    model_seed: int = Field(42, description="Seed of K-Means and the evaluation split.")
    model_keep: int = Field(
        5,
        ge=1,
        description="Model versions kept besides the current one (the newest); when a model is "
        "promoted, older versions' files and `models` documents are deleted. The current "
        "version is never deleted.",
    )
