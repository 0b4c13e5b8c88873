"""The web UI served by ``agent ui`` and ``agent server`` (at ``/``): see :mod:`agent.ui.app`."""
