"""``python -m agent.server``: ``agent server`` without the ``agent`` group."""

from agent.server.cli import server_command

if __name__ == "__main__":
    server_command(prog_name="agent server")
