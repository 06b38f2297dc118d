"""The Docker-free local runtime: a SAM template deployed into an in-process moto server through the service
APIs, its Lambda functions run in reusable Python subprocesses, its SQS events polled as Lambda polls them.

It knows nothing about what the stack does: any SAM template made of the supported resource types runs.
"""

from refund_poller.local.deploy import DeployedResource, Deployment, FunctionDeployment, SkippedResource
from refund_poller.local.errors import DeploymentError, LocalCloudError, TemplateError
from refund_poller.local.event_source import SqsEventSource
from refund_poller.local.stack import InvokeResult, LocalCloud

__all__ = [
    "DeployedResource",
    "Deployment",
    "DeploymentError",
    "FunctionDeployment",
    "InvokeResult",
    "LocalCloud",
    "LocalCloudError",
    "SkippedResource",
    "SqsEventSource",
    "TemplateError",
]
