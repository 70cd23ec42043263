"""CLI commands of the detector stage (filled in as the stage lands)."""

COMMANDS: dict = {}
