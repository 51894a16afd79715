"""Zip bundles are written and read without path traversal: entries that leave their folder, absolute
paths, Windows separators and symbolic links are refused with one line, and nothing is written."""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from conftest import assert_one_line_error, edge_pack

pytestmark = pytest.mark.bad_input


@pytest.mark.parametrize("entry", ["../outside.txt", "/tmp/edge-pack-absolute.txt", "web/../../outside.txt",
                                   "C:/windows.txt", "web\\..\\..\\outside.txt"])
def test_zips_with_paths_that_leave_their_folder_are_refused(tmp_path, entry):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("manifest.json", "{}")
        archive.writestr(entry, "escaped")
    work = tmp_path / "work"
    work.mkdir()
    run = edge_pack("bundle", "merge", evil, "--out", work / "out", cwd=work)
    assert_one_line_error(run, 2, "refusing")
    assert not (tmp_path / "outside.txt").exists() and not Path("/tmp/edge-pack-absolute.txt").exists()
    assert not (work / "out").exists()


def test_zips_with_symbolic_links_are_refused(tmp_path):
    evil = tmp_path / "link.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        info = zipfile.ZipInfo("web/config.json")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    assert_one_line_error(edge_pack("bundle", "merge", evil, "--out", tmp_path / "out"), 2, "symbolic link")


def test_release_zips_are_never_written_from_paths_outside_the_bundle(tmp_path):
    from edge_pack.errors import UserError
    from edge_pack.release import write_zip

    (tmp_path / "secret").write_text("not for the zip")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    with pytest.raises(UserError, match="refusing"):
        write_zip(bundle / "x.zip", bundle, ["../secret"], {})
    assert not list(bundle.iterdir())  # no zip, no temporary file left behind
