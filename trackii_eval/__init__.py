"""trackii_eval: does a Track II dialogue change the people who take part in it?

The stages are public functions and the command line only calls them::

    import trackii_eval as te
    study = te.Study.load("surveys/demo")
    study.ingest(te.load_key("~/.config/trackii_eval/demo.key"))
    scores = study.scores()
    fit = te.growth("perceptions ~ time * arm + (time | participant)", data=scores)
"""

__version__ = "0.1.0"

from .analysis import AnalysisPlan, ModelSpec, default_plan, load_plan  # noqa: E402
from .errors import TrackIIEvalError  # noqa: E402
from .ingest.pseudonym import load_key, write_key  # noqa: E402
from .models import GrowthFit, PanelFit, event_study, growth, lrt  # noqa: E402
from .report import render_report  # noqa: E402
from .scoring import reliability  # noqa: E402
from .study import Study  # noqa: E402

__all__ = [
    "AnalysisPlan",
    "GrowthFit",
    "ModelSpec",
    "PanelFit",
    "Study",
    "TrackIIEvalError",
    "__version__",
    "default_plan",
    "event_study",
    "growth",
    "load_key",
    "load_plan",
    "lrt",
    "reliability",
    "render_report",
    "write_key",
]
