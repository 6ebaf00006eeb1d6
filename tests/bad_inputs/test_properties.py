"""Property-based tests: random valid and invalid params and CSVs never crash uncontrolled.

Whatever the input, the outcome is either a validated result or a UserError whose message
names the culprit; never a traceback from library internals.
"""

from __future__ import annotations

import io as pyio
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as s

from stages import config
from stages.prepare import stage as prepare
from stages.runtime.errors import ConfigError, UserError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text())

scalars = s.one_of(
    s.none(),
    s.booleans(),
    s.integers(-(10**6), 10**6),
    s.floats(allow_nan=True, allow_infinity=True),
    s.text(max_size=12),
    s.lists(s.integers(-3, 40), max_size=3),
)
keys = s.sampled_from(
    [
        "seed",
        "data.val_size",
        "data.test_size",
        "data.task",
        "data.source",
        "data.image_size",
        "data.max_categories",
        "augment.multiplier",
        "augment.image.rotation.p",
        "augment.image.affine.scale",
        "augment.tabular.jitter.std",
        "data.synthetic.n_classes",
        "data.sourcee",
        "augment.imagee.x",
        "mlflow.experiment",
    ]
)


def _with(raw, path, value):
    from stages.common.search_space import set_dotted

    return set_dotted(raw, path, value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s.lists(s.tuples(keys, scalars), min_size=1, max_size=4))
def test_random_params_validate_or_name_the_key(edits):
    raw = SHIPPED
    for path, value in edits:
        raw = _with(raw, path, value)
    try:
        cfg = config.validate(raw, REPO / "params.yaml")
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith(str(REPO / "params.yaml"))
        assert any(path.split(".")[0] in msg for path, _ in edits)
    else:
        assert 0 < cfg.data.val_size + cfg.data.test_size < 1


@settings(max_examples=40, deadline=None)
@given(s.lists(s.floats(1e-6, 0.9), min_size=2, max_size=2))
def test_exponent_strings_are_floats(pair):
    raw = _with(SHIPPED, "augment.tabular.jitter.std", f"{pair[0]:e}")
    assert config.validate(raw).augment.tabular.jitter.std == pytest.approx(pair[0])


cells = s.one_of(
    s.none(),
    s.integers(-1000, 1000),
    s.floats(-1e6, 1e6),
    s.sampled_from(["a", "b", "c", "", "x,y", "é", "NaN", "inf"]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    rows=s.lists(
        s.tuples(cells, cells, s.sampled_from(["p", "q", "r", None])), min_size=0, max_size=80
    )
)
def test_random_csvs_load_or_refuse_clearly(make_params, tmp_path, rows):
    frame = pd.DataFrame(rows, columns=["f1", "f2", "label"])
    buf = pyio.StringIO()
    frame.to_csv(buf, index=False)
    (tmp_path / "r.csv").write_text(buf.getvalue())
    cfg = make_params({"data": {"source": "r.csv", "target": "label"}})
    try:
        planned = prepare.plan(cfg, root=tmp_path)
    except UserError as exc:
        assert str(exc), "an empty message names nothing"
        return
    parts = planned.parts
    sizes = [len(parts[k]) for k in ("train", "val", "test")]
    assert min(sizes) >= 1 and sum(sizes) == len(planned.target.y)
    assert np.unique(np.concatenate(list(parts.values()))).size == sum(sizes)
