"""`python -m sprkit`: the command line (sprkit.app.cli)."""

from sprkit.app.cli import main

raise SystemExit(main())
