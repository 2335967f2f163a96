"""The Markdown, CSV and JSON renderings of one comparison carry the same rows."""

import json

from cnnlab.report.compare import compare
from cnnlab.report.compare_output import to_csv, to_json, to_markdown
from run_records import record


def test_formats_carry_the_same_rows():
    runs = [record("a", s, 0.8 + 0.01 * s) for s in range(2)] + [record("b", 0, 0.5, epochs=3)]
    cmp = compare(runs, baseline="a")
    csv_lines = to_csv(cmp).splitlines()
    assert csv_lines[0].startswith("experiment,") and len(csv_lines) == 3
    assert "p_value" in csv_lines[0] and "train.epochs" in csv_lines[0]
    md = to_markdown(cmp)
    assert "| a | 2 |" in md and "0.8050 ± 0.0071" in md and "Welch" in md
    assert "cannot judge" in md  # b has one seed
    data = json.loads(to_json(cmp))
    assert data["rows"][0]["values"]["test.accuracy"] == [0.8, 0.81]
    assert data["rows"][1]["significance"] == "cannot judge"
