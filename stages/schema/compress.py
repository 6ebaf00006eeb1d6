"""`compress:` section: pruning, INT8 quantization and distillation, each switchable."""

from typing import Literal

from pydantic import Field, field_validator

from stages.schema.base import Section

ARCHS = ("mlp", "cnn", "resnet", "transformer", "lstm", "gru")


class UnstructuredParams(Section):
    """Global L1 magnitude pruning of hidden Linear/Conv/LSTM/GRU weights (torch.nn.utils.prune);
    the output layer is kept."""

    enabled: bool = True
    sparsities: list[float] = Field([0.5, 0.8, 0.9], min_length=1)
    iterative_steps: int = Field(1, ge=1, description="prune -> fine-tune rounds per target")
    finetune_epochs: int = Field(3, ge=0, description="epochs after each pruning round")

    @field_validator("sparsities")
    @classmethod
    def _in_unit_interval(cls, v: list[float]) -> list[float]:
        bad = [s for s in v if not 0.0 <= s < 1.0]
        if bad:
            raise ValueError(f"every sparsity must be in [0, 1); found {bad}")
        return v


class StructuredParams(Section):
    """Remove whole conv channels / linear units (torch-pruning dependency graph)."""

    enabled: bool = True
    ratio: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of channels removed")
    norm: Literal["l1", "l2"] = "l1"
    finetune_epochs: int = Field(5, ge=0)


class QuantizeParams(Section):
    """ONNX export (verified against PyTorch) and ONNX Runtime INT8 quantization."""

    enabled: bool = True
    opset: int = Field(17, ge=13, le=21)
    tolerance: float = Field(1e-4, gt=0.0, description="max |onnx - torch| allowed (atol=rtol)")
    dynamic: bool = True
    static: bool = True
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_size: int = Field(256, ge=1, description="train rows fed to the calibrator")
    per_channel: bool = True
    fp32_input_conv: Literal["auto", "always", "never"] = Field(
        "auto",
        description="keep a shallow input conv fp32 in the static model: auto times both "
        "models and keeps the faster (the file's structure then depends on the machine's "
        "timing); always / never decide without timing, so a re-run writes the same graph",
    )


class DistillParams(Section):
    """A smaller student trained on teacher soft targets, and the same student from scratch."""

    enabled: bool = True
    arch: Literal["same", "mlp", "cnn", "resnet", "transformer", "lstm", "gru"] = "same"
    width: int = Field(8, ge=1)
    depth: int = Field(2, ge=1, le=64)
    temperature: float = Field(4.0, gt=0.0)
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the hard-label CE term")
    epochs: int = Field(40, ge=1)


class LatencyParams(Section):
    repeats: int = Field(30, ge=2, description="timed calls per batch size (p50/p90)")
    warmup: int = Field(3, ge=1, description="untimed calls first")
    budget_s: float = Field(2.0, gt=0.0, description="max seconds timed per batch size")
    threads: int = Field(1, ge=1, description="torch and ONNX Runtime intra-op threads")


class CompressParams(Section):
    use_augmented: bool = Field(True, description="fine-tune/distill on data/augmented")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="AdamW lr for fine-tuning and students")
    degenerate_skill: float = Field(
        0.05,
        ge=0.0,
        lt=1.0,
        description="a variant whose val skill over the trivial predictor (regression: R² "
        "against the fit rows' mean; classification: (acc - majority) / (1 - majority)) is "
        "at or below this, where the original's is above, is `degenerate`: flagged, its file "
        "not shipped",
    )
    unstructured: UnstructuredParams = UnstructuredParams()
    structured: StructuredParams = StructuredParams()
    quantize: QuantizeParams = QuantizeParams()
    distill: DistillParams = DistillParams()
    latency: LatencyParams = LatencyParams()
