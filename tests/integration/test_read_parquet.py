"""aptray.io.fs.read_parquet: the Parquet files of a folder or list, whichever Ray Data datasource reads them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest


def _folder(root: Path, files: int, rows: int = 5) -> Path:
    (root / "nested").mkdir(parents=True)
    for i in range(files):
        sub = root / "nested" if i % 2 else root
        pq.write_table(pa.table({"i": list(range(i * rows, (i + 1) * rows)), "s": [f"x{i}"] * rows}),
                       sub / f"part-{i}.parquet")
    pq.write_table(pa.table({"i": [-1], "s": ["hidden"]}), root / ".hidden.parquet")
    pq.write_table(pa.table({"i": [-2], "s": ["meta"]}), root / "_metadata.parquet")
    (root / "_SUCCESS").write_text("")
    return root


@pytest.mark.parametrize("files", [3, 70])  # under and over SMALL_READ_MAX_FILES: V1 and V2 datasources
def test_reads_every_visible_parquet_file_once(ray_cluster: None, tmp_path: Path, files: int) -> None:
    import ray.data

    from aptray.io.fs import SMALL_READ_MAX_FILES, read_parquet

    assert (files > SMALL_READ_MAX_FILES) == (files == 70)
    ctx = ray.data.DataContext.get_current()
    before = ctx.use_datasource_v2
    ds = read_parquet(str(_folder(tmp_path, files)), pafs.LocalFileSystem(), columns=["i"])
    assert ctx.use_datasource_v2 == before  # the choice is per read, not left behind
    got = sorted(ds.to_pandas()["i"].tolist())
    assert got == list(range(files * 5))
    assert ds.columns() == ["i"]


def test_a_list_of_files_and_an_empty_folder(ray_cluster: None, tmp_path: Path) -> None:
    from aptray.io.fs import read_parquet

    root = _folder(tmp_path / "d", 4)
    ds = read_parquet([str(root / "part-0.parquet"), str(root / "part-2.parquet")], pafs.LocalFileSystem())
    assert ds.count() == 10
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.parquet files"):
        read_parquet(str(tmp_path / "empty"), pafs.LocalFileSystem())
