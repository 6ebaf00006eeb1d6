"""scikit-learn model files: written with skops, loaded with an allowlist of trusted types.

Baselines write them; evaluate (and serving) load them back. No pickle on the load path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from stages.common import io
from stages.runtime.errors import UserError

TRUSTED_PREFIXES = ("sklearn.",)
TRUSTED_EXACT = ("numpy.reshape", "numpy.dtype")


# skops.io lists its trusted types with sklearn's `all_estimators()`, whose package walk
# imports every subpackage of sklearn, `sklearn.externals.array_api_compat.torch` included:
# that imports torch (~1.5 s) in stages that never touch a tensor (prepare, baselines).
_TORCH_SHIM = "sklearn.externals.array_api_compat.torch"


def skops_io():
    """`skops.io`, imported without importing torch through sklearn's array-API shim.

    While it imports, the shim is marked unimportable (the walk skips packages that raise
    ImportError; no estimator lives there); the mark is removed afterwards, so the shim
    imports normally if sklearn's array-API dispatch is ever used with torch."""
    if "skops.io" in sys.modules or "torch" in sys.modules or _TORCH_SHIM in sys.modules:
        import skops.io

        return skops.io
    sys.modules[_TORCH_SHIM] = None  # type: ignore[assignment]
    try:
        import skops.io
    finally:
        if sys.modules.get(_TORCH_SHIM, 0) is None:
            del sys.modules[_TORCH_SHIM]
    return skops.io


def scoring_pipeline(pipe: Any) -> Any:
    """The part of a saved pipeline that takes prepared arrays (drops a table's preprocess)."""
    return pipe[1:] if pipe.steps[0][0] == "preprocess" else pipe


def save_model(pipe: Any, path: Path) -> list[str]:
    """Write `pipe` to `path` (atomically); return the types skops would not trust in it,
    read from the bytes just written (MLflow's `skops_trusted_types`, without a second
    serialization of the model)."""
    sio = skops_io()
    data = sio.dumps(pipe)
    with io.atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return sio.get_untrusted_types(data=data)


def load_trusted(path: str | Path) -> Any:
    """Load a skops file written by this pipeline; refuse any type outside the allowlist."""
    sio = skops_io()
    path = Path(path)
    if not path.exists():
        raise UserError(f"missing {path}; run the stage that writes it first (`dvc repro`)")
    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not (t.startswith(TRUSTED_PREFIXES) or t in TRUSTED_EXACT)]
    if refused:
        raise UserError(
            f"{path}: refusing to load types {refused}; only scikit-learn objects "
            f"(and {', '.join(TRUSTED_EXACT)}) are trusted in a model file"
        )
    return sio.load(path, trusted=untrusted)
