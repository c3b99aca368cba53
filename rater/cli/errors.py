"""The one error every `rater` command raises to stop with a message."""

from __future__ import annotations


class CliError(Exception):
    """Printed as `rater: <message>`; `code` is the exit code (2: usage or unreachable
    service, 1: the API refused the request). An empty message was already reported (a JSON log
    line in `RATER_LOG_FORMAT=json`): nothing more is printed."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
