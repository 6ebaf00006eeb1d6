"""`mlflow:` section: where runs go."""

from stages.schema.base import Section


class MlflowParams(Section):
    tracking_uri: str | None = None
    experiment: str | None = None
