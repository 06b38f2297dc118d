"""The provider sandbox: Antom, Alipay+ wallet and AlphaPay inquiryRefund over real HTTP on loopback.

Refund ids carry their own lifecycle script (``processing3-success--r1``); see docs/sandbox.md.
"""

from refund_poller.sandbox.chaos import CHAOS_FAULTS, ChaosConfig, ChaosError
from refund_poller.sandbox.credentials import PROFILE_SPECS
from refund_poller.sandbox.script import Script, ScriptError, Step, parse_script, script_for_id
from refund_poller.sandbox.server import Sandbox
from refund_poller.sandbox.state import LoggedRequest

__all__ = [
    "CHAOS_FAULTS",
    "PROFILE_SPECS",
    "ChaosConfig",
    "ChaosError",
    "LoggedRequest",
    "Sandbox",
    "Script",
    "ScriptError",
    "Step",
    "parse_script",
    "script_for_id",
]
