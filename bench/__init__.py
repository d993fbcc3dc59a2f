"""pyimg benchmarks: ``make bench`` == ``python -m bench``.

Each suite is a module with ``run(args) -> exit code`` that builds
:class:`~bench.core.Case` objects (two commands, A = pyimg and B = the
reference tool) and runs them with :func:`~bench.core.interleave`
(A B A B ..., fresh work dir per run, ``sync`` before each timed run,
wall time via ``perf_counter``, rusage via ``os.wait4``).

Suites: ``pull`` (pyimg pull vs skopeo copy docker:// -> oci:), ``unpack``
(pyimg unpack vs umoci unpack), ``pullunpack`` (pyimg pull vs a private
containerd's ``ctr image pull``), ``floor`` (pyimg unpack vs zcat | tar) and
``runtime`` (``pyimg runtime run`` vs runc/crun on one bundle, ``pyimg run
--rm`` vs a private containerd's ``ctr run --rm``).
Add a suite by writing ``bench/<name>.py`` and listing it in :data:`SUITES`
as ``"module"`` (its ``run``) or ``"module:function"``.
"""

from .core import BenchError, Case, CaseResult, Measurement, interleave, measure

SUITES = {
    "pull": "bench.pull",
    "unpack": "bench.unpack:run_unpack",
    "pullunpack": "bench.unpack:run_pullunpack",
    "floor": "bench.unpack:run_floor",
    "runtime": "bench.runtime",
    "inspect": "bench.inspect",
}

__all__ = ["SUITES", "BenchError", "Case", "CaseResult", "Measurement", "interleave", "measure"]
