"""`mecha up` keeps a demo.yaml the user edited, and rewrites its own (its ports follow --port-offset)."""

from __future__ import annotations

from pathlib import Path

from xds.demo.config import default_layout, demo_config
from xds.runner.demofile import write_demo_config


def test_first_up_writes_the_demo_and_a_later_offset_rewrites_it(tmp_path: Path) -> None:
    first, shifted = demo_config(default_layout("sidecar", 0)), demo_config(default_layout("sidecar", 100))
    assert write_demo_config(tmp_path, first) is None
    assert (tmp_path / "demo.yaml").read_text() == first
    assert write_demo_config(tmp_path, shifted) is None  # unedited: ours to rewrite
    assert (tmp_path / "demo.yaml").read_text() == shifted


def test_an_edited_demo_file_is_kept_and_the_note_says_so(tmp_path: Path) -> None:
    rendered = demo_config(default_layout("sidecar", 0))
    write_demo_config(tmp_path, rendered)
    edited = rendered.replace("weight: 80", "weight: 50").replace("weight: 20", "weight: 50")
    (tmp_path / "demo.yaml").write_text(edited)
    note = write_demo_config(tmp_path, demo_config(default_layout("sidecar", 100)))
    assert note is not None and "kept your edited" in note and "demo.yaml" in note
    assert (tmp_path / "demo.yaml").read_text() == edited


def test_a_demo_file_written_before_the_stamp_existed_counts_as_the_users(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text("# mine\n")
    assert write_demo_config(tmp_path, demo_config(default_layout("sidecar", 0))) is not None
    assert (tmp_path / "demo.yaml").read_text() == "# mine\n"
