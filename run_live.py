#!/usr/bin/env python3
"""realtime_swap's command line. With no arguments: the live demo on the built-in demo source."""

from realtime_swap.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
