"""Sub-commands of the ``ultrasam`` console script (see ``ultrasam.cli``)."""
