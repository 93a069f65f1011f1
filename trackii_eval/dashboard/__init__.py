"""The funder's portfolio dashboard (``trackii-eval dashboard``): see :mod:`.build`."""

from .build import Dashboard, PortfolioStudy, build_dashboard, dashboard_data, portfolio_tables
from .cost import cost_per_additional_improver
from .meta import MetaResult, random_effects

__all__ = ["Dashboard", "MetaResult", "PortfolioStudy", "build_dashboard",
           "cost_per_additional_improver", "dashboard_data", "portfolio_tables",
           "random_effects"]
