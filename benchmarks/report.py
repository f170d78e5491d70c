"""What every benchmark does with its result: one JSON line on stdout, the same JSON in a file."""

import json
import pathlib


def emit_result(result, output=None):
    print(json.dumps(result, ensure_ascii=False))
    if output:
        output = pathlib.Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
