"""The ``refund-poller`` command line: :mod:`main` registers one module per verb."""
