"""`python -m vlsim ...` entry point."""

from vlsim.cli import main

raise SystemExit(main())
