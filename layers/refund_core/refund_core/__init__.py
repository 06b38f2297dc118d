"""refund_core: the provider protocol code shipped to Lambda as a layer. Knows nothing about AWS
except in :mod:`refund_core.store` and :mod:`refund_core.aws`."""
