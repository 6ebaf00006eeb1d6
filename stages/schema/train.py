"""`train:` section: optimization, regularization, devices, checkpoints, logging."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from stages.schema.base import Section

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULERS = ("none", "cosine", "step", "exponential", "onecycle", "warmup_cosine")
PRECISIONS = ("32", "16-mixed", "bf16-mixed")


class OptimizerParams(Section):
    name: Literal["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"] = "adamw"
    lr: float = Field(5e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="momentum/nesterov/rmsprop")
    betas: tuple[float, float] = (0.9, 0.999)


class SchedulerParams(Section):
    name: Literal["none", "cosine", "step", "exponential", "onecycle", "warmup_cosine"] = "onecycle"
    eta_min: float = Field(0.0, ge=0.0, description="cosine/warmup_cosine: final lr")
    step_size: int = Field(10, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.5, gt=0.0, le=1.0, description="step/exponential: decay factor")
    warmup_epochs: float = Field(1.0, ge=0.0, description="warmup_cosine: linear warmup")
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="onecycle: rising fraction")


class GradientClip(Section):
    value: float | None = Field(None, gt=0.0, description="null = no clipping")
    algorithm: Literal["norm", "value"] = "norm"


class BatchMix(Section):
    """MixUp or CutMix: blend pairs in a batch with lam ~ Beta(alpha, alpha), prob p."""

    enabled: bool = False
    p: float = Field(0.5, ge=0.0, le=1.0)
    alpha: float = Field(0.2, gt=0.0)


class EarlyStopping(Section):
    enabled: bool = False
    patience: int = Field(5, ge=1, description="epochs without improvement")
    min_delta: float = Field(0.0, ge=0.0)


class WeightEMA(Section):
    """An exponential moving average of the weights (`lightning_modules.callbacks.WeightEMA`).

    Validation, checkpoints and the shipped model use the averaged weights.
    """

    enabled: bool = True
    decay: float = Field(0.99, gt=0.0, lt=1.0, description="per optimizer step")
    every_n_steps: int = Field(
        4, ge=1, description="update every n steps with decay**n: same horizon, 1/n the cost"
    )


class TrainParams(Section):
    max_epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    use_augmented: bool = True
    use_tuned: bool = True
    fit_on: Literal["train", "train+val"] = Field(
        "train+val",
        description="rows the final model is fit on; train+val = refit after tuning chose on val",
    )
    resume: bool = False
    loss: Literal["auto", "cross_entropy", "mse", "huber", "l1"] = "auto"
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    l1: float = Field(
        0.0, ge=0.0, description="L1 penalty coefficient on the network's weights (0 = off)"
    )
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        "off", description="torch.compile the network (mode); state dicts stay plain"
    )
    in_memory: Literal["auto"] | bool = Field(
        "auto",
        description="true = the splits as tensors in memory, false = batches streamed from "
        "disk; auto = in memory when they fit a budget (stages.train.rows)",
    )
    accumulate_grad_batches: int = Field(
        1, ge=1, description="batches whose gradients add up to one optimizer step"
    )
    optimizer: OptimizerParams = OptimizerParams()
    scheduler: SchedulerParams = SchedulerParams()
    gradient_clip: GradientClip = GradientClip()
    mixup: BatchMix = BatchMix()
    cutmix: BatchMix = BatchMix(alpha=1.0)
    monitor: str = Field("auto", description="auto = val/loss (classification), val/rmse")
    early_stopping: EarlyStopping = EarlyStopping()
    ema: WeightEMA = WeightEMA()
    ship: Literal["auto", "best", "last"] = Field(
        "auto", description="checkpoint that becomes model.pt; auto = best with early stopping"
    )
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "ddp_spawn", "single_device", "fsdp"] = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: Literal["32", "16-mixed", "bf16-mixed"] = "32"
    deterministic: bool = True
    threads: int | None = Field(None, ge=1, description="torch CPU threads; null = torch default")
    log_every_n_steps: int = Field(50, ge=1)
    log_per_step: bool = Field(False, description="also log train/loss every n steps")
    progress_bar: Literal["auto", "on", "off"] = "auto"

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, v):
        return str(v) if isinstance(v, int) else v

    @field_validator("progress_bar", "compile", mode="before")
    @classmethod
    def _yaml_on_off(cls, v):
        # YAML 1.1 (and so `dvc exp run -S train.progress_bar=off`) reads on/off as booleans
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("monitor")
    @classmethod
    def _monitor_name(cls, v: str) -> str:
        allowed = ("auto", "val/loss", "val/acc", "val/f1", "val/auroc", "val/rmse", "val/mae")
        if v not in (*allowed, "val/r2"):
            raise ValueError(f"expected one of {', '.join((*allowed, 'val/r2'))}")
        return v

    @model_validator(mode="after")
    def _val_unseen_where_it_chooses(self):
        """With val rows in the fit, choosing an epoch by a val metric would choose on seen rows."""
        if self.fit_on == "train+val":
            choosers = [
                key
                for key, on in (
                    ("train.early_stopping.enabled = true", self.early_stopping.enabled),
                    ("train.ship = 'best'", self.ship == "best"),
                )
                if on
            ]
            if choosers:
                which = " and ".join(choosers)
                raise ValueError(
                    f"train.fit_on = 'train+val' fits on the val rows, but {which} picks the "
                    "epoch by a val metric; set train.fit_on: train to keep val unseen"
                )
        return self

    @model_validator(mode="after")
    def _strategy_fits_devices(self):
        if self.strategy == "single_device" and self.devices > 1:
            raise ValueError(f"strategy single_device cannot use devices={self.devices}")
        if self.strategy == "fsdp" and self.ema.enabled:
            # Lightning's WeightAveraging keeps an unsharded AveragedModel of the module
            raise ValueError(
                "train.strategy = 'fsdp' shards the weights, but train.ema averages the whole "
                "model on every rank (Lightning's WeightAveraging does not shard); set "
                "train.ema.enabled: false"
            )
        return self
