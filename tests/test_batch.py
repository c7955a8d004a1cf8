"""Many files at once (glean_sr.inference.batch): output naming and the summary line; the
commands' end-to-end behaviour is in test_cli_upscale.py and test_cli_faces.py."""

from __future__ import annotations

from pathlib import Path

from glean_sr.inference.batch import Job, Reporter, plan_outputs, summary_line


def test_outputs_are_named_and_collisions_marked_before_any_work(tmp_path):
    (tmp_path / "in").mkdir()
    a, b, c = (tmp_path / "in" / n for n in ("a.png", "a.jpg", "x_up.png"))
    jobs = [Job(a, Path()), Job(b, Path("sub")), Job(Path(str(b)), Path("sub")), Job(c, Path())]
    for job in jobs:
        job.path.write_bytes(b"x")
    plan_outputs(jobs, tmp_path / "in", "_up", "png")
    assert [j.output for j in jobs] == [
        tmp_path / "in" / "a_up.png",
        tmp_path / "in" / "sub" / "a_up.png",
        tmp_path / "in" / "sub" / "a_up.png",
        tmp_path / "in" / "x_up_up.png",
    ]
    assert [j.problem is None for j in jobs] == [True, True, False, True]
    assert "is also the output of" in jobs[2].problem
    plan_outputs([job := Job(tmp_path / "in" / "x.png", Path())], tmp_path / "in", "_up", "png")
    assert job.problem is None
    collide = [Job(c, Path())]
    plan_outputs(collide, tmp_path / "in", "", "png")
    assert "would overwrite the input" in collide[0].problem


def test_summary_line_counts():
    report = Reporter(3, ["gone.png: no such file or folder"])
    report.ok("a")
    report.skip("b")
    report.close()
    assert (report.done, report.failed, report.skipped) == (1, 1, 1)
    assert summary_line(report, 4, 1.25, Path("out")) == (
        "done: 1 restored, 1 failed, 1 skipped (output exists) of 4 in 1.2 s; outputs in out"
    )
    assert summary_line(report, 4, 2.0, Path("out"), "1 photo(s) done").startswith(
        "done: 1 photo(s) done, 1 failed"
    )
