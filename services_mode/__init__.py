"""Hosting of long-running service tasks (pipeline controllers), several at a time.

``agent daemon --queue services --services-mode [N]`` runs a :class:`ServicesHost`.
"""

from services_mode.host import DEFAULT_MAX_RUNNING, ServicesHost

__all__ = ["DEFAULT_MAX_RUNNING", "ServicesHost"]
