"""`atom replay evaluate`: ATOM's routing strategies and ensembles over recorded answers, offline.

Every test prompt goes through the real `route()` and `combine()`; the answer is the one the
chosen model gave in the dataset, scored and costed as recorded. The snapshot each prompt is
routed on carries the per-prompt quality learnt from the train part's scores, and quality_first's
knob, the quality gain the dearer model must promise, traces its curve. The run is logged.

Modules, in the order a run uses them: `_settings` (what is asked), `_dataset` (read, score,
cost, split), `_routers` (each router over the test prompts), `_figures` (each router's row),
`_record` (the run in the event log), `_output` (table and plot), `_cli` (the command line).
"""

from ._cli import add_parser, command, settings_from
from ._dataset import Case, Prepared, load, prepare
from ._figures import Evaluation, Row, evaluate
from ._record import run
from ._settings import DEFAULT_PRICES, EvaluationError, Price, Settings

__all__ = [
    "DEFAULT_PRICES",
    "Case",
    "Evaluation",
    "EvaluationError",
    "Prepared",
    "Price",
    "Row",
    "Settings",
    "add_parser",
    "command",
    "evaluate",
    "load",
    "prepare",
    "run",
    "settings_from",
]
