"""UltraSam training on mmengine: data, prompt simulation, the two-pass objective, hooks and commands.

Entry points: ``ultrasam train|test|export`` (``cli.register``), :func:`runner.train`,
:func:`export.export_checkpoint`, :func:`run_eval.run_evaluation`. Configs live in
``ultrasam_training/configs``; importing :mod:`ultrasam_training.train.runner` and calling
``register_all()`` registers the dataset, sampler, loop, model and hooks with mmengine.
"""
