"""``python -m agent.cli`` runs the ``agent`` command line."""

from agent.cli.main import main

if __name__ == "__main__":
    main()
