"""`model:` section: which network and its shape (width, depth, activation, norm, init)."""

from typing import Literal

from pydantic import Field, model_validator

from stages.schema.base import Section

ARCHS = ("mlp", "cnn", "resnet", "transformer", "lstm", "gru")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "swish", "tanh", "sigmoid")
NORMS = ("auto", "batch", "layer", "group", "none")
INITS = ("xavier_uniform", "xavier_normal", "kaiming", "default")


class TransformerParams(Section):
    heads: int = Field(4, ge=1, description="attention heads; must divide model.width")
    patch_size: int = Field(2, ge=1, description="image patch side (ViT); must divide H and W")
    positions: Literal["learned", "sinusoidal"] = "learned"
    mlp_ratio: float = Field(2.0, gt=0.0, description="feed-forward width / model.width")


class RnnParams(Section):
    bidirectional: bool = False


class ModelParams(Section):
    arch: Literal["mlp", "cnn", "resnet", "transformer", "lstm", "gru"] = "cnn"
    width: int = Field(32, ge=1, description="first block's channels / hidden units / embed dim")
    depth: int = Field(2, ge=1, le=64, description="blocks / hidden layers / encoder layers")
    widen: float = Field(2.0, ge=1.0, description="cnn/resnet: channel multiplier per block")
    kernel_size: int = Field(3, ge=1, description="cnn/resnet conv kernel (odd keeps the size)")
    conv: Literal["standard", "group", "depthwise_separable"] = "standard"
    groups: int = Field(2, ge=2, description="conv: group; must divide the channels")
    block: Literal["basic", "bottleneck"] = "basic"
    activation: Literal["relu", "leaky_relu", "elu", "gelu", "silu", "swish", "tanh", "sigmoid"] = (
        "relu"
    )
    norm: Literal["auto", "batch", "layer", "group", "none"] = Field(
        "auto", description="auto = layer for the transformer, batch for every other arch"
    )
    norm_groups: int = Field(8, ge=1, description="groups for norm: group")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    init: Literal["xavier_uniform", "xavier_normal", "kaiming", "default"] = "kaiming"
    transformer: TransformerParams = TransformerParams()
    rnn: RnnParams = RnnParams()

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.arch == "transformer" and self.width % self.transformer.heads:
            raise ValueError(
                f"arch transformer needs width divisible by transformer.heads, "
                f"got width={self.width}, heads={self.transformer.heads}"
            )
        self._conv_kind_applies()
        if self.arch == "resnet" and self.kernel_size % 2 == 0:
            raise ValueError(
                f"arch resnet needs an odd kernel_size (a residual block adds its input to its "
                f"output, so the conv must keep the map size), got kernel_size={self.kernel_size}"
            )
        return self

    def _conv_kind_applies(self) -> None:
        """model.conv / model.block must change the network, or they are refused."""
        if self.block != "basic" and self.arch != "resnet":
            raise ValueError(f"model.block = {self.block!r} applies to arch resnet only, not "
                             f"{self.arch!r}; remove it or set arch: resnet")  # fmt: skip
        if self.conv == "standard":
            return
        if self.arch not in ("cnn", "resnet"):
            raise ValueError(f"model.conv = {self.conv!r} applies to arch cnn or resnet, not "
                             f"{self.arch!r}")  # fmt: skip
        if self.arch == "cnn" and self.depth == 1:
            raise ValueError(
                f"model.conv = {self.conv!r} changes nothing at depth 1: the first conv takes "
                "the image's own channels and stays standard; use depth >= 2"
            )
        channels = [max(1, round(self.width * self.widen**b)) for b in range(self.depth)]
        if self.conv == "group" and self.block == "basic":
            bad = [c for c in channels if c % self.groups]
            if bad:
                raise ValueError(
                    f"model.groups = {self.groups} must divide every block's channels "
                    f"{channels} (width x widen^block); {bad} are not divisible"
                )
