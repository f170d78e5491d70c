"""One exception type for every user-facing mistake (bad flag, bad file, bad config).

Entry points catch it and print its message with exit code 2 instead of a traceback.
"""


class UserError(Exception):
    """A problem with what the user asked for or gave us, with a message that says how to fix it."""


class Interrupted(Exception):
    """Training stopped by SIGINT or SIGTERM after saving a checkpoint; ``exit_code`` is 128 + the
    signal number, as a shell reports a process killed by it."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code
