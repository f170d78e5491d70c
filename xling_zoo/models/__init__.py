"""Registered models: importing this package registers every built-in one (its only side effect)."""
from xling_zoo.models import lstm_seq2seq  # noqa: F401
from xling_zoo.models import transformer  # noqa: F401
from xling_zoo.models import adversarial  # noqa: F401
from xling_zoo.models import lm  # noqa: F401
