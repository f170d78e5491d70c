import pytest

from xling_zoo import registry
from xling_zoo.errors import UserError
from xling_zoo.models.base import Seq2SeqTask


def test_builtin_models_are_registered():
    assert "lstm_seq2seq" in registry.list_models()
    assert registry.list_models() == sorted(registry.list_models())


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(UserError, match="unknown model 'nope'.*lstm_seq2seq"):
        registry.get_model("nope")


def test_duplicate_name_is_refused():
    registry.get_model("lstm_seq2seq")

    with pytest.raises(ValueError, match="already registered"):
        @registry.register_model("lstm_seq2seq")
        class Other(Seq2SeqTask):
            pass


def test_only_task_subclasses_register():
    with pytest.raises(TypeError, match="subclass of Task"):
        registry.register_model("not_a_task")(dict)


def test_a_new_model_plugs_in_by_name():
    @registry.register_model("test_plugin_model")
    class Plugin(Seq2SeqTask):
        pass

    try:
        assert registry.get_model("test_plugin_model") is Plugin
        assert Plugin.registered_name == "test_plugin_model"
    finally:
        registry._MODELS.pop("test_plugin_model")
