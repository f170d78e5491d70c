import re

import pytest

from xling_zoo import config as config_lib
from xling_zoo.errors import UserError


@pytest.fixture
def config():
    return config_lib.load_config("lstm_seq2seq")


def test_every_model_has_a_config_file():
    from xling_zoo.registry import list_models

    for name in list_models():
        assert config_lib.load_config(name).model_name == name


def test_overrides_keep_the_field_type(config):
    for assignment in ["train.steps=7", "train.learning_rate=1e-3", "train.max_minutes=2",
                       "model.attention=false", "data.bucket_boundaries=(4, 8)", "pair=en-nl"]:
        config_lib.apply_override(config, assignment)
    assert config.train.steps == 7 and config.train.learning_rate == 1e-3
    assert config.train.max_minutes == 2.0 and isinstance(config.train.max_minutes, float)
    assert config.model.attention is False
    assert config.data.bucket_boundaries == (4, 8)
    assert config.pair == "en-nl"


@pytest.mark.parametrize("assignment, message", [
    ("train.stepz=3", "unknown key 'train.stepz'.*steps"),
    ("trian.steps=3", "has no section 'trian'"),
    ("train.steps", "not of the form key=value"),
    ("train.steps=many", "takes a int"),
    ("model.attention=maybe", "takes true or false"),
])
def test_bad_overrides_are_clear_errors(config, assignment, message):
    with pytest.raises(UserError, match=message):
        config_lib.apply_override(config, assignment)


def test_json_round_trip_and_compatibility(config):
    copy = config_lib.from_json(config_lib.to_json(config))
    assert copy.to_dict() == config.to_dict()
    assert config_lib.incompatible_keys(config, copy) == []
    config_lib.apply_override(copy, "train.steps=3")  # Training length may change on resume.
    assert config_lib.incompatible_keys(config, copy) == []
    config_lib.apply_override(copy, "model.units=64")
    assert config_lib.incompatible_keys(config, copy) == ["model"]


def test_missing_config_file():
    with pytest.raises(UserError, match="does not exist"):
        config_lib.load_config("lstm_seq2seq", "/nonexistent/config.py")


def test_an_older_run_config_gets_the_fields_added_since():
    config = config_lib.load_config("lstm_seq2seq")
    old = config_lib.from_json(config_lib.to_json(config))
    del old["skip_bad_lines"]
    del old.train["checkpoint_every_steps"]
    filled = config_lib.with_defaults(old)
    assert filled.skip_bad_lines is False and filled.train.checkpoint_every_steps == 1000
    assert filled.train.steps == config.train.steps  # What the run had stays.


@pytest.mark.parametrize("assignment, message", [
    ("train.learning_rate=0", "train.learning_rate=0.0 must be > 0"),
    ("train.label_smoothing=1.0", "train.label_smoothing=1.0 must be in [0, 1)"),
    ("model.dropout=-0.1", "model.dropout=-0.1 must be in [0, 1)"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints=0 must be >= 1"),
    ("eval.beam_size=0", "eval.beam_size=0 must be >= 1"),
    ("eval.decode_length_ratio=-1", "eval.decode_length_ratio=-1.0 must be >= 0"),
    ("eval.decode_length_offset=-2", "eval.decode_length_offset=-2 must be >= 0"),
])
def test_values_a_run_cannot_start_with(assignment, message):
    config = config_lib.load_config("lstm_seq2seq")
    config_lib.validate(config)
    config_lib.apply_override(config, assignment)
    with pytest.raises(UserError, match=re.escape(message)):
        config_lib.validate(config)
