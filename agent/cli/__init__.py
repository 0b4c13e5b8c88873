"""The ``agent`` command line (click); entry point :func:`agent.cli.main.main`."""
