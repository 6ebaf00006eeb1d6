"""`data:` section: where the data comes from and how it is split and preprocessed."""

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from stages.schema.base import Section

BUILTINS = ("digits", "iris", "wine", "breast_cancer", "diabetes", "synthetic")
FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".npz")


class SyntheticParams(Section):
    """Sizes for `source: synthetic` (make_classification / make_regression)."""

    n_samples: int = Field(2000, ge=20)
    n_features: int = Field(20, ge=1)
    n_informative: int = Field(10, ge=1)
    n_classes: int = Field(3, ge=2)
    noise: float = Field(0.1, ge=0.0)

    @model_validator(mode="after")
    def _informative_fits(self):
        if self.n_informative > self.n_features:
            raise ValueError(
                f"n_informative={self.n_informative} exceeds n_features={self.n_features}"
            )
        return self


class ImputeParams(Section):
    numeric: Literal["mean", "median", "most_frequent"] = "median"
    categorical: Literal["most_frequent", "constant"] = "most_frequent"


class DataParams(Section):
    source: str = "digits"
    target: str | None = None
    task: Literal["auto", "classification", "regression"] = "auto"
    val_size: float = Field(0.15, gt=0.0, lt=1.0)
    test_size: float = Field(0.15, gt=0.0, lt=1.0)
    image_size: tuple[int, int] | None = None
    synthetic: SyntheticParams = SyntheticParams()
    impute: ImputeParams = ImputeParams()
    categorical_encoding: Literal["onehot", "ordinal"] = "onehot"
    max_categories: int = Field(50, ge=2)
    scaling: Literal["standard", "minmax", "none"] = "standard"
    max_classes: int = Field(1000, ge=2)
    encoding: str = "auto"
    max_bytes: int = Field(2_000_000_000, ge=1)
    # tables: rows (at most) of the seeded sample that the preprocessing is fitted on and
    # the column review reads; a table with fewer rows is read whole for both
    sample_rows: int = Field(1_000_000, ge=100)
    # width x height of one image; larger files are refused by name (PIL's own default)
    max_image_pixels: int = Field(89_478_485, ge=1)
    # image folders: an unreadable, empty or truncated file stops prepare naming it before
    # anything is written (error), or is left out with a count in the log and metrics (skip)
    on_bad_image: Literal["error", "skip"] = "error"
    # tables: column -> how to read it, where the default guess is not what you mean
    columns: dict[str, Literal["numeric", "categorical", "drop"]] = {}

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, v):
        if v is not None and min(v) < 1:
            raise ValueError(f"image_size must be two positive ints [H, W], got {list(v)}")
        return v

    @field_validator("source")
    @classmethod
    def _source_exists(cls, v: str, info: ValidationInfo) -> str:
        if v in BUILTINS:
            return v
        root = Path((info.context or {}).get("root", "."))
        path = (root / v).resolve()
        if not path.exists():
            raise ValueError(
                f"no such file or directory: {path}; expected a built-in dataset "
                f"({', '.join(BUILTINS)}), a .csv/.parquet/.npz file or an image folder"
            )
        if path.is_file() and path.suffix.lower() not in FILE_SUFFIXES:
            raise ValueError(
                f"unsupported file type {path.suffix!r} for {path}; "
                f"expected one of {', '.join(FILE_SUFFIXES)} or an image folder"
            )
        return v

    @model_validator(mode="after")
    def _splits_leave_training_data(self):
        total = self.val_size + self.test_size
        if total >= 1.0:
            raise ValueError(
                f"data.val_size + data.test_size = {self.val_size:g} + {self.test_size:g} = "
                f"{total:g} leaves no training data; expected a sum below 1 (e.g. 0.15 + 0.15)"
            )
        return self

    @property
    def is_builtin(self) -> bool:
        return self.source in BUILTINS
