"""Base model shared by every params section: unknown keys refused, values frozen."""

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Toggle(Section):
    """A transform or technique that can be switched off, applied with probability `p`."""

    enabled: bool = True
    p: float = Field(0.5, ge=0.0, le=1.0)
