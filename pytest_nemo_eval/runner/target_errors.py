"""The error of a model target that cannot be reached or deployed, shared by the resources that provide the
target and the watch that notices it is lost (so neither imports the other for it)."""

from __future__ import annotations


class TargetUnavailable(RuntimeError):
    """The endpoint cannot be reached or the checkpoint cannot be deployed."""
