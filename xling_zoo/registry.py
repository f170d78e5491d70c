"""The model registry: one dict from name to model class, filled by a decorator.

A new model is one new file in ``xling_zoo/models/`` that decorates its class with
``@register_model("name")``; the trainer, transfer step and export look it up by name and never
change for it.
"""

from xling_zoo.errors import UserError

_MODELS = {}


def register_model(name):
    """Class decorator: registers a ``models.base.Task`` subclass under ``name``."""

    def decorator(cls):
        from xling_zoo.models.base import Task  # Local import: base imports keras (slow).

        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"@register_model({name!r}) needs a subclass of Task, got {cls!r}")
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_MODELS[name].__name__}")
        _MODELS[name] = cls
        cls.registered_name = name
        return cls

    return decorator


def _import_builtin_models():
    import xling_zoo.models  # noqa: F401  (importing it registers every built-in model)


def get_model(name):
    """Returns the model class registered under ``name``."""
    _import_builtin_models()
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[name]


def list_models():
    """Sorted names of every registered model."""
    _import_builtin_models()
    return sorted(_MODELS)
