"""UltraSam training and data pipeline (optional extra of the ``ultrasam`` package)."""
