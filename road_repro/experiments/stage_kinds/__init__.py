"""One module per stage kind, each a ``run(exp, ...)`` over the shared :class:`~road_repro.experiments.context.Context`.

``warm_start``, ``finetune``, ``soft_targets`` (and the teacher targets a KD student reads), ``ensemble``,
``predict`` and ``mtl``; :class:`~road_repro.experiments.stages.Experiment` exposes each as a method. A stage
calls another through those methods (``exp.finetune``, ``exp.soft_targets``), never through its module, so a
subclass that overrides a stage (the planner) sees every stage it implies.
"""
