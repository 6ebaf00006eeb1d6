"""What one sample's shape says about the data (a table row, a sequence or an image), and
which architectures take each: no torch needed, so params can be checked cheaply."""

from __future__ import annotations

LAYOUTS = {1: "table", 2: "sequence", 3: "image"}
# the layouts each architecture takes (an image is a sequence of rows for the recurrent nets)
SUPPORTED = {
    "mlp": ("table", "sequence", "image"),
    "cnn": ("image",),
    "resnet": ("image",),
    "transformer": ("table", "sequence", "image"),
    "lstm": ("sequence", "image"),
    "gru": ("sequence", "image"),
}


def layout(input_shape) -> str:
    """'table' for (F,), 'sequence' for (T, F), 'image' for (C, H, W)."""
    if len(input_shape) not in LAYOUTS:
        raise ValueError(f"input_shape {list(input_shape)}: expected (F,), (T, F) or (C, H, W)")
    return LAYOUTS[len(input_shape)]
