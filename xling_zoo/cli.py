"""What every ``python -m xling_zoo.X`` entry point shares: quiet TF logs, clean user errors."""

import os
import sys

# Before TensorFlow is imported: its C++ start-up chatter hides our own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from xling_zoo.errors import Interrupted, UserError  # noqa: E402


def define_thread_flags():
    """--intra_op_threads / --inter_op_threads, for the entry points that run models: on a shared
    machine a run must not take every core (TensorFlow's default)."""
    if "intra_op_threads" in flags.FLAGS:  # An entry point run again in one Python (runpy, tests).
        return
    flags.DEFINE_integer("intra_op_threads", 0, "Threads one TensorFlow op may use (0 = TensorFlow's "
                         "default: all cores). With --inter_op_threads, what a run takes of a shared machine.")
    flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow ops run at the same time (0 = TensorFlow's default).")


def apply_thread_flags():
    """Sets TensorFlow's thread pools from --intra_op_threads / --inter_op_threads, if the entry point
    defines them; must run before TensorFlow runs its first op."""
    values = {name: flags.FLAGS[name].value for name in ("intra_op_threads", "inter_op_threads")
              if name in flags.FLAGS}
    for name, value in values.items():
        if value < 0:
            raise UserError(f"--{name} must be >= 0 (0 = TensorFlow's default), got {value}")
    if any(values.values()):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(values.get("intra_op_threads", 0))
        tf.config.threading.set_inter_op_parallelism_threads(values.get("inter_op_threads", 0))


def read_stdin_lines():
    """stdin's lines (split at line feeds only, as readlines does), decoded as UTF-8 with invalid bytes
    replaced (U+FFFD), without their line feed: a stray byte in one line must not fail the whole input."""
    lines = sys.stdin.buffer.read().decode("utf-8", "replace").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def one_line(text):
    """``text`` on one line (its line breaks, as Python's splitlines sees them, become spaces): one
    output line per input line."""
    return " ".join(text.splitlines()) if text else text


def run(main):
    """``app.run(main)``, turning a UserError into one line on stderr and exit code 2."""

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]} (flags are written --name=value)")
        try:
            apply_thread_flags()
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except Interrupted as e:
            print(str(e), file=sys.stderr)
            sys.exit(e.exit_code)

    app.run(guarded)
