"""The bottom layer: what every other layer may use and that uses none of them.

* :mod:`~rmisr_monai.core.options`: :class:`RunOptions`, the one set of run options every front end builds (no
  torch: the CLI reads it to build its arguments before anything heavy is imported);
* :mod:`~rmisr_monai.core.axes`: axis names and ``round(n * s)``, the length of an upscaled axis;
* :mod:`~rmisr_monai.core.arrays`: numpy casts to a stored dtype;
* :mod:`~rmisr_monai.core.intensity`: the invertible intensity normalisation to ``[0, 1]``;
* :mod:`~rmisr_monai.core.runtime`: the device and what the CPU computes natively (bf16).

Nothing here imports MONAI, IO libraries or another ``rmisr_monai`` subpackage except :mod:`rmisr_monai.errors`.
"""
