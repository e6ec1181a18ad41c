"""Errors fermap reports to its users as one line."""


class FermapError(Exception):
    """A bad input or a failed step, reported as one line naming the file and the reason."""


class NoFaceError(FermapError):
    """No face, or no landmarks, could be found in an image."""
