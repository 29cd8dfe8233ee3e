"""unitscope's torch-free core: the data contract, the metric SQL, the statistics, the claim rules, the readers
of a published DB, and the Python API (`unitscope.open`). Both `worker/` and `app/` import it; it imports neither."""

from unitscope.api import Database, Layer, Run, Unit, open
from unitscope.errors import Closed, NotFound, OverlapWarning, Problem, Unavailable

__all__ = ["Closed", "Database", "Layer", "NotFound", "OverlapWarning", "Problem", "Run", "Unavailable", "Unit",
           "open"]
