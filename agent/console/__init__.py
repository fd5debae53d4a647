"""The technologist's console: a small web page served by the agent (docs/console.md).

``Console(cfg.console, agent)`` is the component; ``agent.console.follow`` is the terminal view.
"""
from .component import REASONS, Console

__all__ = ["Console", "REASONS"]
