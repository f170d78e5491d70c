"""What every ``python -m xling_zoo.X`` entry point shares: quiet TF logs, clean user errors."""

import os
import sys

# Before TensorFlow is imported: its C++ start-up chatter hides our own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402

from xling_zoo.errors import Interrupted, UserError  # noqa: E402


def run(main):
    """``app.run(main)``, turning a UserError into one line on stderr and exit code 2."""

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]} (flags are written --name=value)")
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except Interrupted as e:
            print(str(e), file=sys.stderr)
            sys.exit(e.exit_code)

    app.run(guarded)
