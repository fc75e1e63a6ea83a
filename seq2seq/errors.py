"""The exceptions the CLIs turn into one message and an exit status, without a traceback."""


class UserError(Exception):
    """A problem with the user's input, config or files; the message names the fix."""


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; the message says how to resume.

    The CLIs exit with 128 + the signal number, as a shell does for a process it interrupted,
    so ``seq2seq-train ... && seq2seq-evaluate ...`` does not go on to evaluate.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
