"""refund_poller: the developer tooling around refund_core (CLI, provider sandbox, local runtime).

Never shipped to Lambda: only :mod:`refund_core` goes into the layer.
"""
