"""`kvforge report --quick`: a table with a row for every policy and a valid PNG."""
import struct

import pytest

from conftest import run_kvforge


@pytest.fixture(scope="module")
def quick_report(kvforge_bin, smollm2_gguf, eval_text, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    r = run_kvforge(kvforge_bin, "report", "-m", smollm2_gguf, "--quick", "-f", eval_text,
                    "--policies", "full;window:64,sinks:4;q8;bogus-policy", "-o", out)
    return r, out


def test_table_has_every_policy(quick_report):
    r, out = quick_report
    md = (out / "report.md").read_text()
    rows = [l for l in md.splitlines() if l.startswith("| ") and not l.startswith(("| policy", "| -"))]
    assert len(rows) == 4, md
    for name in ("full", "window:64,sinks:4", "q8", "bogus-policy"):
        assert any(row.startswith(f"| {name}") for row in rows), (name, md)
    full = next(row for row in rows if row.startswith("| full"))
    cells = [c.strip() for c in full.strip("|").split("|")]
    assert cells[1] == "23040"                      # SmolLM2-135M: 30 * 3 * 64 * 2 * 2 bytes per token
    assert cells[2] == "5.90 MB" and cells[3] == "11.80 MB"
    assert all(c not in ("-", "n/a") for c in cells), full   # every number measured
    # A window stops growing at sinks + window tokens: 68 * 23040 bytes at both lengths.
    window = [c.strip() for c in next(row for row in rows if row.startswith("| window")).strip("|").split("|")]
    assert window[2] == window[3] == "1.57 MB", window
    assert "bogus-policy (skipped)" in md and "skipped:" in md
    assert r.stdout.count("\n") == 6                 # the table on stdout too
    assert (out / "report.json").is_file()


def test_png_is_valid(quick_report):
    _, out = quick_report
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1800, 600)
    assert len(png) > 20_000   # three panels with lines, points and labels
