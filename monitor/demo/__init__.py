"""The demo (`python -m monitor demo`): the example timeline, moved to the present, in a service
of its own (issue 14). These constants are light: the command line's parser reads them."""

import pathlib

EXAMPLE_TIMELINE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "timeline.jsonl"
DEFAULT_DATA_DIR = pathlib.Path("var") / "demo"
