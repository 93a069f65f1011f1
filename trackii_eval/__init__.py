"""trackii_eval: does a Track II dialogue change the people who take part in it?

The stages are public functions and the command line only calls them::

    import trackii_eval as te
    study = te.Study.load("surveys/demo")
    study.ingest(te.load_key("~/.config/trackii_eval/demo.key"))
    scores = study.scores()
    fit = te.growth("perceptions ~ (time + post_time) * arm + (time | participant)",
                    data=scores)

Names are imported on first use, so ``import trackii_eval`` stays fast for the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AnalysisPlan": ".analysis",
    "ModelSpec": ".analysis",
    "default_plan": ".analysis",
    "load_plan": ".analysis",
    "TrackIIEvalError": ".errors",
    "load_key": ".ingest.pseudonym",
    "write_key": ".ingest.pseudonym",
    "GrowthFit": ".models.growth",
    "growth": ".models.growth",
    "lrt": ".models.growth",
    "compare_growth": ".models.growth",
    "GlmmFit": ".models.glmm",
    "glmm": ".models.glmm",
    "PanelFit": ".models.panel",
    "event_study": ".models.panel",
    "panel": ".models.panel_estimators",
    "hausman": ".models.panel_estimators",
    "compare": ".models.results",
    "result_from_dict": ".models.results",
    "render_report": ".report",
    "reliability": ".scoring.reliability",
    "Study": ".study",
    "Store": ".store",
    "StudyContext": ".pipeline",
    "load_context": ".pipeline",
}

__all__ = [
    "AnalysisPlan",
    "GlmmFit",
    "GrowthFit",
    "ModelSpec",
    "PanelFit",
    "Store",
    "Study",
    "StudyContext",
    "TrackIIEvalError",
    "__version__",
    "compare",
    "compare_growth",
    "default_plan",
    "event_study",
    "glmm",
    "growth",
    "hausman",
    "load_context",
    "load_key",
    "load_plan",
    "lrt",
    "panel",
    "reliability",
    "render_report",
    "result_from_dict",
    "write_key",
]

if TYPE_CHECKING:  # pragma: no cover
    from .analysis import AnalysisPlan, ModelSpec, default_plan, load_plan
    from .errors import TrackIIEvalError
    from .ingest.pseudonym import load_key, write_key
    from .models.glmm import GlmmFit, glmm
    from .models.growth import GrowthFit, compare_growth, growth, lrt
    from .models.panel import PanelFit, event_study
    from .models.panel_estimators import hausman, panel
    from .models.results import compare, result_from_dict
    from .pipeline import StudyContext, load_context
    from .report import render_report
    from .scoring.reliability import reliability
    from .store import Store
    from .study import Study


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trackii_eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
