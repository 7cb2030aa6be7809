"""Command-line front end (``destiny``); see destiny.cli.main."""
