"""The exceptions the local runtime raises to its callers."""

from __future__ import annotations


class LocalCloudError(Exception):
    """Base class: something the local runtime cannot do."""


class TemplateError(LocalCloudError):
    """The template cannot be read or one of its expressions cannot be evaluated."""


class DeploymentError(LocalCloudError):
    """A resource could not be created, or AWS would refuse it too."""
