"""AWS adapters for the service's ports: merchant profiles in Secrets Manager, EventBridge, Step Functions."""

from refund_core.aws.events import EventBridgeEvents
from refund_core.aws.executions import StepFunctionsExecutions
from refund_core.aws.profiles import SecretsManagerAdapters, secret_name

__all__ = ["EventBridgeEvents", "SecretsManagerAdapters", "StepFunctionsExecutions", "secret_name"]
