"""One exception type for every user-facing mistake (bad flag, bad file, bad config).

Entry points catch it and print its message with exit code 2 instead of a traceback.
"""


class UserError(Exception):
    """A problem with what the user asked for or gave us, with a message that says how to fix it."""
