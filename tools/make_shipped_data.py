"""Write susx_cli/data/{imagenet_classnames,openai_templates}.json from the installed open_clip.

    python tools/make_shipped_data.py           # (re)write both files
    python tools/make_shipped_data.py --check   # exit 1 if the shipped files differ from open_clip's lists

Each file records the open_clip version it came from. susx reads these files instead of importing
open_clip (and torch) when it only needs the names or the templates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "susx_cli" / "data"
GENERATOR = "tools/make_shipped_data.py"


def from_open_clip() -> dict[str, dict]:
    """File name -> content, built from the installed open_clip."""
    import open_clip

    marker = "\x00CLASS\x00"  # a class name no template contains, turned back into '{}'
    templates = [t(marker).replace(marker, "{}") for t in open_clip.OPENAI_IMAGENET_TEMPLATES]
    origin = {"open_clip_version": open_clip.__version__, "generated_by": GENERATOR}
    return {
        "imagenet_classnames.json": {
            "source": "open_clip.IMAGENET_CLASSNAMES",
            **origin,
            "names": list(open_clip.IMAGENET_CLASSNAMES),
        },
        "openai_templates.json": {
            "source": "open_clip.OPENAI_IMAGENET_TEMPLATES",
            **origin,
            "templates": templates,
        },
    }


def content_differs(shipped: dict, current: dict) -> bool:
    """Whether the lists differ (the recorded version alone may change without the lists changing)."""
    keys = ("names", "templates")
    return any(shipped.get(k) != current.get(k) for k in keys)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for name, content in from_open_clip().items():
        path = DATA_DIR / name
        if args.check:
            shipped = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            if content_differs(shipped, content):
                stale.append(name)
            continue
        path.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path.name} (open_clip {content['open_clip_version']})")
    if stale:
        print(f"differ from the installed open_clip: {', '.join(stale)}; run {GENERATOR}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
