"""The params schema: the shipped file validates, and every error names file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stages import config
from stages.config import __main__ as config_cli
from stages.runtime.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _load_text(tmp_path: Path, text: str) -> config.Params:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return config.load(path)


def test_shipped_params_validate():
    cfg = config.load(REPO / "params.yaml")
    assert cfg.data.source == "digits"


def test_empty_file_gives_defaults(tmp_path):
    cfg = _load_text(tmp_path, "")
    assert cfg.seed == 42 and cfg.data.val_size == 0.15


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load_text(tmp_path, "seed: 1\ndata:\n  source: [digits\n  task: auto\n")
    msg = str(err.value)
    assert "params.yaml:" in msg and "YAML syntax error" in msg
    assert ":4:" in msg or ":3:" in msg


def test_unknown_key_suggests_closest(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load_text(tmp_path, "data:\n  sourse: digits\n")
    msg = str(err.value)
    assert "data.sourse" in msg and "did you mean 'data.source'" in msg


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(ConfigError, match=r"augmnt: unknown key; did you mean 'augment'"):
        _load_text(tmp_path, "augmnt: {}\n")


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load_text(tmp_path, "augment:\n  multiplier: lots\n")
    assert "augment.multiplier = 'lots'" in str(err.value)
    assert "integer" in str(err.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("data:\n  val_size: -0.1\n", "data.val_size = -0.1"),
        ("data:\n  test_size: 1.5\n", "data.test_size = 1.5"),
        ("augment:\n  multiplier: 0\n", "augment.multiplier = 0"),
        ("augment:\n  image:\n    rotation: {p: 2}\n", "augment.image.rotation.p = 2"),
        ("seed: -3\n", "seed = -3"),
    ],
)
def test_out_of_range_values(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        _load_text(tmp_path, text)
    assert key in str(err.value)


def test_split_sizes_must_leave_training_rows(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"data.val_size \+ data.test_size = 0.5 \+ 0.5 = 1 leaves no training data",
    ):
        _load_text(tmp_path, "data:\n  val_size: 0.5\n  test_size: 0.5\n")


@pytest.mark.parametrize(
    "train, fragment",
    [
        ("early_stopping: {enabled: true}", "train.early_stopping.enabled = true"),
        ("ship: best", "train.ship = 'best'"),
    ],
)
def test_refit_refuses_choosing_the_epoch_on_val(tmp_path, train, fragment):
    with pytest.raises(ConfigError) as err:
        _load_text(tmp_path, f"train:\n  {train}\n")
    assert "train.fit_on = 'train+val' fits on the val rows" in str(err.value)
    assert fragment in str(err.value) and "set train.fit_on: train" in str(err.value)
    _load_text(tmp_path, f"train:\n  fit_on: train\n  {train}\n")  # val kept unseen: fine


def test_resnet_with_an_even_kernel_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"model.*resnet needs an odd kernel_size.*kernel_size=4"):
        _load_text(tmp_path, "model:\n  arch: resnet\n  kernel_size: 4\n")


def test_missing_source_path_is_named(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load_text(tmp_path, "data:\n  source: data/raw/nope.csv\n")
    msg = str(err.value)
    assert "data.source = 'data/raw/nope.csv'" in msg and "no such file" in msg
    assert str(tmp_path / "data/raw/nope.csv") in msg


def test_unsupported_file_type(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ConfigError, match="unsupported file type '.txt'"):
        _load_text(tmp_path, "data:\n  source: x.txt\n")


def test_exponent_string_from_dvc_exp_is_a_float(tmp_path):
    # `dvc exp run -S augment.tabular.jitter.std=1e-06` writes 1e-06, which YAML reads as str
    cfg = _load_text(tmp_path, "augment:\n  tabular:\n    jitter: {std: 1e-06}\n")
    assert cfg.augment.tabular.jitter.std == pytest.approx(1e-6)
    assert isinstance(yaml.safe_load("x: 1e-06")["x"], str)


def test_errors_are_all_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load_text(tmp_path, "seed: -1\naugment:\n  multiplier: 0\n")
    assert "2 invalid value(s)" in str(err.value)


def test_params_are_frozen(make_params):
    cfg = make_params()
    with pytest.raises(Exception, match="frozen"):
        cfg.data.val_size = 0.3


def test_params_hash_depends_only_on_named_sections(make_params):
    a = make_params()
    b = make_params({"augment": {"multiplier": 3}})
    assert config.params_hash(a, "seed", "data") == config.params_hash(b, "seed", "data")
    assert config.params_hash(a, "augment") != config.params_hash(b, "augment")


def test_config_cli_reports_errors(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  task: clasification\n")
    assert config_cli.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.task = 'clasification'" in err and "'classification'" in err


def _dvc_param_keys() -> dict[str, list[str]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {
        name: [p for p in st.get("params", []) if isinstance(p, str)] for name, st in stages.items()
    }


def _schema_has(dotted: str) -> bool:
    model = config.Params
    for part in dotted.split("."):
        field = model.model_fields.get(part)
        if field is None:
            return False
        model = config._model_of(field.annotation)
        if model is None:
            return part == dotted.split(".")[-1]
    return True


def test_every_dvc_params_key_exists_in_schema():
    for stage, keys in _dvc_param_keys().items():
        for key in keys:
            assert _schema_has(key), f"dvc.yaml stage {stage!r} lists unknown param {key!r}"


@pytest.mark.parametrize(
    "section",
    ["data", "augment", "baselines", "model", "train", "tune", "compress", "evaluate", "serve"],
)
def test_every_schema_key_of_a_section_is_tracked_by_dvc(section):
    listed = {k for keys in _dvc_param_keys().values() for k in keys}

    def covered(path: str, model) -> bool:
        if path in listed:
            return True
        sub = config._model_of(model.model_fields[path.rsplit(".", 1)[-1]].annotation)
        return sub is not None and all(covered(f"{path}.{f}", sub) for f in sub.model_fields)

    model = config._model_of(config.Params.model_fields[section].annotation)
    for field in model.model_fields:
        assert covered(f"{section}.{field}", model), f"{section}.{field} not in dvc.yaml"


@pytest.mark.parametrize(
    "overrides",
    [
        {"source": "data/raw/examples/houses.csv", "target": "price"},
        {"source": "data/raw/examples/shapes", "target": None, "image_size": [16, 16]},
    ],
)
def test_readme_own_data_overrides_validate(shipped_params, overrides):
    raw = {**shipped_params, "data": {**shipped_params["data"], **overrides}}
    cfg = config.validate(raw, REPO / "params.yaml")
    assert cfg.data.source == overrides["source"]


def test_yaml_on_off_progress_bar(tmp_path):
    # YAML 1.1 reads `off` as False; the schema must still mean the word
    assert _load_text(tmp_path, "train:\n  progress_bar: off\n").train.progress_bar == "off"
    assert _load_text(tmp_path, "train:\n  progress_bar: on\n").train.progress_bar == "on"
