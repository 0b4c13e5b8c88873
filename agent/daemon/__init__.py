"""The agent daemon: the queue loop (``loop``), heartbeats with machine stats (``stats``),
stop signals (``signals``), background mode and ``--stop`` (``detach``), ``agent daemon``
(``cli``). How a task runs lives in ``agent.execution``; N at once in ``services_mode``.
"""
