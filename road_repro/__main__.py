"""``python -m road_repro``: the ``road-repro`` command-line tool (:mod:`road_repro.cli`)."""

import sys

from road_repro.cli import main

sys.exit(main())
