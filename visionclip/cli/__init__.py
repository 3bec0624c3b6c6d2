"""Command-line entry points: each module has `main(argv) -> int`; the root scripts and `[project.scripts]` call
them."""
