"""The demo repository: reads params.json and the inputs, writes output/ and result.json (the seed's example)."""

import csv
import json
from pathlib import Path

params = json.loads(Path("params.json").read_text())
a, b = params.get("a", 0), params.get("b", 0)
inputs = sorted(str(p.relative_to("inputs")) for p in Path("inputs").rglob("*") if p.is_file())
print(f"params: {params}")
print(f"inputs: {inputs}")

rows = 0
for name in inputs:
    if name.endswith(".csv"):
        with open(Path("inputs") / name, newline="", encoding="utf-8-sig") as f:
            rows += sum(1 for _ in csv.DictReader(f))

Path("output").mkdir(exist_ok=True)
with open("output/summary.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["a", "b", "hyperparam", "input_files", "input_rows"])
    w.writerow([a, b, params.get("hyperparam"), len(inputs), rows])

result = {"output": {"value": (a + b) * 20, "more_results": "So long, and thanks for all the fish"}}
Path("result.json").write_text(json.dumps(result))
print("done")
