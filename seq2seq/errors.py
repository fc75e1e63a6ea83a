"""The one exception type for mistakes a user can fix; the CLIs print it without a traceback."""


class UserError(Exception):
    """A problem with the user's input, config or files; the message names the fix."""
