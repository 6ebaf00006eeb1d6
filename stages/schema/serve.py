"""`serve:` section: which candidate the package stage ships, and how it takes input."""

from typing import Literal

from pydantic import Field

from stages.schema.base import Section


class ServeParams(Section):
    candidate: str = Field(
        "best", min_length=1, description="best (the leaderboard's winner) or a candidate name"
    )
    extra_columns: Literal["error", "ignore"] = "error"  # tables: columns the model never saw
    registry: bool = True  # register the packaged model as a new MLflow registry version
    registered_name: str | None = None  # null = reprolab-<dataset>
