#!/usr/bin/env python3
"""Write a synthetic fleet file of N hosts shaped like the 10k fixture.

Each host copies the labels and components of a host of
examples/fleet-10k.json (cycling through it), so the strata keep the
fixture's long-tailed role × site distribution, and gets a unique id.

usage: bench/gen_fleet.py N OUT.json
"""
import json
import pathlib
import sys


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    count, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
    fixture = pathlib.Path(__file__).resolve().parent.parent / "examples" / "fleet-10k.json"
    templates = json.loads(fixture.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        f.write("[")
        for i in range(count):
            template = templates[i % len(templates)]
            labels = template["labels"]
            host = {
                "id": f"{labels['site']}-{labels['role']}-{labels['pool']}{i}.example.net",
                "labels": labels,
                "components": template["components"],
            }
            if i:
                f.write(",\n")
            f.write(json.dumps(host, separators=(",", ":")))
        f.write("]\n")


if __name__ == "__main__":
    main()
