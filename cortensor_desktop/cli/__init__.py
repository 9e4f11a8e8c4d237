"""The command line: argparse (not typer, which would pull rich into the headless path)."""
