"""The ``funnel`` command: one module per command group, registered by :mod:`cli`."""
