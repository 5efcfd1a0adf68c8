"""The artifact store publishes complete run folders or nothing, locally and on fsspec."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from conftest import REPO

from modelcycle.artifacts import (
    MANIFEST_FORMAT,
    PENDING_NAME,
    ArtifactStore,
    RunWriter,
    sha256_bytes,
)
from modelcycle.errors import ArtifactStoreError, IntegrityError


@pytest.fixture
def local_store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def memory_store() -> Iterator[ArtifactStore]:
    # The memory filesystem is process-global: give each test its own root.
    root = f"memory://store-{uuid.uuid4().hex}"
    yield ArtifactStore(root)
    fs = fsspec.filesystem("memory")
    path = fs._strip_protocol(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest) -> ArtifactStore:
    return request.getfixturevalue(f"{request.param}_store")


def _all_paths(store: ArtifactStore, model: str) -> list[str]:
    """Every file under the model folder, staging included, as the filesystem sees it."""
    folder = store._model_path(model)
    return store.fs.find(folder) if store.fs.exists(folder) else []


def _put(store: ArtifactStore, path: str, data: bytes) -> None:
    """Write behind the store's back, as a tamperer or a crashed copy would."""
    store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    store.fs.pipe_file(path, data)


def _write_sample(writer: RunWriter) -> dict[str, bytes]:
    expected = {
        "metrics.json": b"",  # filled below from the writer's own serialisation
        "notes.txt": "résumé ✓\n".encode(),
        "plots/raw.bin": bytes(range(256)) * 10,
    }
    writer.write_json("metrics.json", {"b": 2, "a": 1.5})
    writer.write_text("notes.txt", "résumé ✓\n")
    writer.write_bytes("plots/raw.bin", expected["plots/raw.bin"])
    expected["metrics.json"] = b'{\n  "a": 1.5,\n  "b": 2\n}\n'
    return expected


def test_commit_manifest_matches_bytes_on_disk(store: ArtifactStore) -> None:
    with store.open_run("churn", "run-1") as writer:
        expected = _write_sample(writer)
        folder = writer.commit({"config": {"seed": 7}, "code_version": "abc"})

    assert folder.uri == store.run_uri("churn", "run-1")
    manifest = store.read_manifest("churn", "run-1")
    assert manifest == folder.manifest
    assert manifest["format"] == MANIFEST_FORMAT
    assert (manifest["model"], manifest["run_id"]) == ("churn", "run-1")
    assert manifest["config"] == {"seed": 7} and manifest["code_version"] == "abc"
    assert manifest["created_at"].endswith("+00:00")
    assert set(manifest["files"]) == set(expected)
    for name, data in expected.items():
        with fsspec.open(store.file_uri("churn", "run-1", name), "rb") as handle:
            on_disk = handle.read()
        assert on_disk == data
        assert manifest["files"][name] == {
            "sha256": hashlib.sha256(on_disk).hexdigest(),
            "size": len(on_disk),
        }
    assert store.verify("churn", "run-1") == []
    assert store.list_runs("churn") == ["run-1"]
    # Staging is gone: only the final folder remains.
    assert all("/run-1/" in p and ".staging" not in p for p in _all_paths(store, "churn"))


def test_local_store_uses_plain_paths(local_store: ArtifactStore, tmp_path: Path) -> None:
    with local_store.open_run("m", "r") as writer:
        writer.write_text("a.txt", "x")
        folder = writer.commit({})
    assert folder.uri == str(tmp_path / "artifacts" / "m" / "r")
    assert (Path(folder.uri) / "manifest.json").is_file()
    with local_store.open_file(local_store.file_uri("m", "r", "a.txt")) as handle:
        assert handle.read() == b"x"


def test_memory_store_end_to_end(memory_store: ArtifactStore) -> None:
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", None]})
    with memory_store.open_run("m", "r1") as writer:
        writer.write_dataframe_parquet("data/reference.parquet", df)
        writer.commit({"rows": 3})
    assert memory_store.run_uri("m", "r1").startswith("memory://")
    assert memory_store.list_runs("m") == ["r1"]
    assert memory_store.verify("m", "r1") == []
    back = pd.read_parquet(io.BytesIO(memory_store.read_bytes("m", "r1", "data/reference.parquet")))
    pd.testing.assert_frame_equal(back, df)
    # A second store object on the same URL sees the same runs.
    assert ArtifactStore(memory_store.root).read_manifest("m", "r1")["rows"] == 3


def test_crash_inside_with_leaves_nothing(store: ArtifactStore) -> None:
    with store.open_run("m", "good") as writer:
        writer.write_text("a.txt", "ok")
        writer.commit({})

    with pytest.raises(RuntimeError, match="boom"), store.open_run("m", "crashed") as writer:
        writer.write_text("a.txt", "half")
        raise RuntimeError("boom")

    assert not store.fs.exists(store._run_path("m", "crashed"))
    assert store.list_runs("m") == ["good"]
    assert not any("crashed" in p for p in _all_paths(store, "m"))
    with pytest.raises(ArtifactStoreError, match="never committed"):
        store.read_manifest("m", "crashed")


def test_hard_kill_staging_and_manifestless_folder_are_not_runs(store: ArtifactStore) -> None:
    # A killed process never reaches __exit__: its staging folder stays behind.
    killed = store.open_run("m", "killed")
    killed.write_text("a.txt", "half")
    # An interrupted object-store copy leaves a final folder without a manifest.
    _put(store, store._run_path("m", "partial") + "/a.txt", b"x")

    assert any(".staging-killed" in p for p in _all_paths(store, "m"))
    assert store.list_runs("m") == []
    with pytest.raises(ArtifactStoreError, match="never committed"):
        store.verify("m", "partial")
    # A retry under the same run id gets its own staging folder and commits.
    with store.open_run("m", "killed") as retry:
        retry.write_text("a.txt", "whole")
        retry.commit({})
    assert store.list_runs("m") == ["killed"]
    assert store.read_bytes("m", "killed", "a.txt") == b"whole"


def test_crash_between_manifest_and_rename_is_not_a_run(store: ArtifactStore) -> None:
    writer = store.open_run("m", "r")
    writer.write_text("a.txt", "x")
    writer._write_manifest(writer._build_manifest({}))  # then the process dies
    assert any(p.endswith("manifest.json") and ".staging-r" in p for p in _all_paths(store, "m"))
    assert store.list_runs("m") == []
    assert not store.fs.exists(store._run_path("m", "r"))


def test_exit_without_commit_discards_and_raises(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactStoreError, match="without commit"):  # noqa: SIM117
        with store.open_run("m", "forgot") as writer:
            writer.write_text("a.txt", "x")
    assert _all_paths(store, "m") == []
    assert store.list_runs("m") == []


def test_explicit_abort_is_quiet_and_final(store: ArtifactStore) -> None:
    with store.open_run("m", "r") as writer:
        writer.write_text("a.txt", "x")
        writer.abort()
        writer.abort()  # idempotent
        with pytest.raises(ArtifactStoreError, match="aborted"):
            writer.write_text("b.txt", "y")
        with pytest.raises(ArtifactStoreError, match="aborted"):
            writer.commit({})
    assert _all_paths(store, "m") == []


def test_duplicate_run_id_refused(store: ArtifactStore) -> None:
    early = store.open_run("m", "r")  # opened before the first commit: passes the early check
    with store.open_run("m", "r") as writer:
        writer.write_text("a.txt", "first")
        writer.commit({})
        with pytest.raises(ArtifactStoreError, match="already committed"):
            writer.commit({})

    with pytest.raises(ArtifactStoreError, match="already exists"):
        store.open_run("m", "r")

    early.write_text("a.txt", "second")
    with pytest.raises(ArtifactStoreError, match="already exists"):
        early.commit({})
    # The committed run is untouched and the loser's staging is gone.
    assert store.read_bytes("m", "r", "a.txt") == b"first"
    assert store.verify("m", "r") == []
    assert not any(".staging" in p for p in _all_paths(store, "m"))


def test_publish_failure_leaves_no_final_folder(
    local_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "rename", refuse)
    writer = local_store.open_run("m", "r")
    writer.write_text("a.txt", "x")
    with pytest.raises(ArtifactStoreError, match="disk on fire"):
        writer.commit({})
    assert _all_paths(local_store, "m") == []


def test_object_store_copy_failure_removes_partial_copies(
    memory_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_copy = memory_store.fs.copy
    calls = []

    def flaky_copy(src: str, dst: str, **kwargs: object) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("network down")
        real_copy(src, dst, **kwargs)

    monkeypatch.setattr(memory_store.fs, "copy", flaky_copy)
    writer = memory_store.open_run("m", "r")
    writer.write_text("a.txt", "x")
    writer.write_text("b.txt", "y")
    with pytest.raises(OSError, match="network down"):
        writer.commit({})
    assert calls[0].endswith("/a.txt")  # manifest is copied last, never reached
    assert _all_paths(memory_store, "m") == []
    assert memory_store.list_runs("m") == []


def test_verify_detects_tampering(store: ArtifactStore) -> None:
    with store.open_run("m", "r") as writer:
        writer.write_bytes("model.bin", b"0123456789")
        writer.write_bytes("keep.bin", b"k")
        writer.write_bytes("gone.bin", b"g")
        writer.commit({})
    folder = store._run_path("m", "r")
    _put(store, folder + "/model.bin", b"0123456780")  # same size, other bytes
    _put(store, folder + "/keep.bin", b"kk")
    store.fs.rm_file(folder + "/gone.bin")
    _put(store, folder + "/extra/sneaky.bin", b"s")

    problems = store.verify("m", "r")
    assert len(problems) == 4, problems
    assert any(p.startswith("model.bin: SHA-256") for p in problems)
    assert any(p.startswith("keep.bin: size 2") for p in problems)
    assert "gone.bin: missing" in problems
    assert any(p.startswith("extra/sneaky.bin: present but not listed") for p in problems)


def test_read_verified_returns_only_what_the_manifest_recorded(store: ArtifactStore) -> None:
    with store.open_run("m", "r") as writer:
        writer.write_bytes("model.bin", b"0123456789")
        writer.write_bytes("keep.bin", b"k")
        folder = writer.commit({})
    anchor = folder.manifest_sha256
    assert anchor == sha256_bytes(store.fs.cat_file(store._run_path("m", "r") + "/manifest.json"))
    assert store.read_verified("m", "r", "keep.bin", manifest_sha256=anchor) == b"k"
    assert store.read_verified("m", "r", "keep.bin", folder.manifest) == b"k"
    with pytest.raises(ArtifactStoreError, match="refusing an unanchored read"):
        store.read_verified("m", "r", "keep.bin")
    run = store._run_path("m", "r")
    _put(store, run + "/model.bin", b"0123456780")  # same size, other bytes
    _put(store, run + "/extra.bin", b"x")  # never listed
    for name in ("model.bin", "extra.bin"):
        with pytest.raises(IntegrityError) as info:
            store.read_verified("m", "r", name, manifest_sha256=anchor)
        assert str(info.value) == (
            f"{store.file_uri('m', 'r', name)}: SHA-256 does not match the run's manifest: "
            "it was changed after the run"
        )
    with pytest.raises(ArtifactStoreError, match="no such file") as missing:
        store.read_verified("m", "r", "gone.bin", manifest_sha256=anchor)
    assert isinstance(missing.value.__cause__, FileNotFoundError)
    with pytest.raises(ArtifactStoreError, match="never committed"):
        store.read_verified("m", "other", "keep.bin", manifest_sha256=anchor)
    # The manifest itself is checked against the registry's hash before it vouches for a file.
    manifest_path = run + "/manifest.json"
    _put(store, manifest_path, store.fs.cat_file(manifest_path).replace(b'"size"', b'"size" '))
    with pytest.raises(IntegrityError, match="the manifest was changed after registration"):
        store.read_verified("m", "r", "keep.bin", manifest_sha256=anchor)


def test_holding_finds_the_store_of_a_run_folder(store: ArtifactStore) -> None:
    with store.open_run("m", "r") as writer:
        writer.write_bytes("keep.bin", b"k")
        folder = writer.commit({})
    for uri in (folder.uri, folder.uri + "/"):
        holder = ArtifactStore.holding(uri)
        assert holder.run_uri("m", "r") == folder.uri
        assert holder.read_verified("m", "r", "keep.bin", folder.manifest) == b"k"


def test_read_manifest_rejects_foreign_or_broken_manifest(store: ArtifactStore) -> None:
    path = store._run_path("m", "r") + "/manifest.json"
    _put(store, path, b"{not json")
    with pytest.raises(ArtifactStoreError, match="not valid JSON"):
        store.read_manifest("m", "r")
    _put(store, path, json.dumps({"format": "other"}).encode())
    with pytest.raises(ArtifactStoreError, match="expected format"):
        store.read_manifest("m", "r")
    bad = {"format": MANIFEST_FORMAT, "model": "m", "run_id": "other", "files": {}}
    _put(store, path, json.dumps(bad).encode())
    with pytest.raises(ArtifactStoreError, match="not 'm'/'r'"):
        store.read_manifest("m", "r")
    bad = {"format": MANIFEST_FORMAT, "model": "m", "run_id": "r", "files": {"a": {"size": 1}}}
    _put(store, path, json.dumps(bad).encode())
    with pytest.raises(ArtifactStoreError, match="'files' must map"):
        store.verify("m", "r")


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a b", "ü", "x" * 256, "run\n"]
)
def test_unsafe_model_and_run_id_refused(local_store: ArtifactStore, bad: str) -> None:
    with pytest.raises(ArtifactStoreError, match="model") as exc:
        local_store.open_run(bad, "r")
    assert repr(bad) in str(exc.value)
    with pytest.raises(ArtifactStoreError, match="run_id") as exc:
        local_store.open_run("m", bad)
    assert repr(bad) in str(exc.value)
    with pytest.raises(ArtifactStoreError):
        local_store.list_runs(bad)


@pytest.mark.parametrize(
    "bad", ["", "../x", "a/../b", "/abs", "a//b", "a/", "./a", "a\\b", "a b", "manifest.json"]
)
def test_unsafe_file_names_refused(store: ArtifactStore, bad: str) -> None:
    with store.open_run("m", "r") as writer:
        with pytest.raises(ArtifactStoreError, match=r"file name|manifest\.json"):
            writer.write_bytes(bad, b"x")
        writer.abort()
    assert _all_paths(store, "m") == []


def test_sub_folder_manifest_name_is_allowed(store: ArtifactStore) -> None:
    with store.open_run("m", "r") as writer:
        writer.write_json("eval/manifest.json", {"a": 1})
        folder = writer.commit({})
    assert "eval/manifest.json" in folder.manifest["files"]


def test_same_name_twice_and_file_folder_clash_refused(store: ArtifactStore) -> None:
    with store.open_run("m", "r") as writer:
        writer.write_text("a.txt", "x")
        with pytest.raises(ArtifactStoreError, match="already written"):
            writer.write_text("a.txt", "y")
        writer.write_text("plots/roc.png", "x")
        with pytest.raises(ArtifactStoreError, match="clashes"):
            writer.write_text("plots", "x")
        with pytest.raises(ArtifactStoreError, match="clashes"):
            writer.write_text("a.txt/b", "x")
        folder = writer.commit({})
    assert set(folder.manifest["files"]) == {"a.txt", "plots/roc.png"}
    assert store.read_bytes("m", "r", "a.txt") == b"x"


def test_metadata_reserved_keys_and_non_json_refused(store: ArtifactStore) -> None:
    writer = store.open_run("m", "r")
    writer.write_text("a.txt", "x")
    with pytest.raises(ArtifactStoreError, match="reserved"):
        writer.commit({"files": {}})
    assert _all_paths(store, "m") == []

    with pytest.raises(ArtifactStoreError, match="JSON"), store.open_run("m", "r") as writer:
        writer.write_text("a.txt", "x")
        writer.commit({"when": object()})
    assert _all_paths(store, "m") == []


def test_write_json_is_deterministic(store: ArtifactStore) -> None:
    with store.open_run("m", "r") as writer:
        writer.write_json("one.json", {"b": [1, 2], "a": {"y": 1, "x": "é"}})
        writer.write_json("two.json", {"a": {"x": "é", "y": 1}, "b": [1, 2]})
        folder = writer.commit({})
    files = folder.manifest["files"]
    assert files["one.json"] == files["two.json"]
    assert json.loads(store.read_bytes("m", "r", "one.json")) == {
        "a": {"x": "é", "y": 1},
        "b": [1, 2],
    }


def test_write_figure_stores_png(store: ArtifactStore) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    with store.open_run("m", "r") as writer:
        writer.write_figure("plots/line.png", fig)
        writer.commit({})
    data = store.read_bytes("m", "r", "plots/line.png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (200, 100)  # figsize x dpi 100


def test_path_for_local_files_are_hashed(local_store: ArtifactStore) -> None:
    with local_store.open_run("m", "r") as writer:
        path = writer.path_for("model/pipeline.bin")
        path.write_bytes(b"written by a library")
        folder = writer.commit({})
    assert folder.manifest["files"]["model/pipeline.bin"] == {
        "sha256": hashlib.sha256(b"written by a library").hexdigest(),
        "size": len(b"written by a library"),
    }
    assert local_store.verify("m", "r") == []


def test_path_for_never_written_fails_commit(local_store: ArtifactStore) -> None:
    with pytest.raises(ArtifactStoreError, match="nothing was written"):  # noqa: SIM117
        with local_store.open_run("m", "r") as writer:
            writer.path_for("model.bin")
            writer.commit({})
    assert _all_paths(local_store, "m") == []


def test_path_for_refused_on_object_store(memory_store: ArtifactStore) -> None:
    with memory_store.open_run("m", "r") as writer:
        with pytest.raises(ArtifactStoreError, match="write_bytes"):
            writer.path_for("model.bin")
        writer.abort()


def test_list_runs_of_unknown_model_is_empty(store: ArtifactStore) -> None:
    assert store.list_runs("nobody") == []
    with pytest.raises(ArtifactStoreError, match="no such file"):
        store.read_bytes("nobody", "r", "a.txt")


# --- registration marker and reconciliation (crash windows) ---------------------------------

HOUR = 3600.0


def _commit_pending(store: ArtifactStore, run_id: str, model: str = "m") -> None:
    with store.open_run(model, run_id) as writer:
        writer.write_text("a.txt", run_id)
        writer.commit({}, pending_registration=True)


def test_pending_folder_is_not_a_run_until_confirmed(store: ArtifactStore) -> None:
    _commit_pending(store, "r")
    # Complete and intact, but killed before its registry row: not listed.
    assert store.list_runs("m") == []
    assert store.unconfirmed_runs("m")["r"]["state"] == "pending"
    assert store.verify("m", "r") == []
    assert "a.txt" in store.read_manifest("m", "r")["files"]
    assert PENDING_NAME not in store.read_manifest("m", "r")["files"]

    store.confirm_registered("m", "r")
    store.confirm_registered("m", "r")  # idempotent
    assert store.list_runs("m") == ["r"]
    assert store.unconfirmed_runs("m") == {}
    assert not store.fs.exists(store._run_path("m", "r") + "/" + PENDING_NAME)
    with pytest.raises(ArtifactStoreError, match="never committed"):
        store.confirm_registered("m", "never")


def test_the_marker_name_is_the_store_s_own(store: ArtifactStore) -> None:
    with store.open_run("m", "r") as writer:
        with pytest.raises(ArtifactStoreError, match="written by commit"):
            writer.write_text(PENDING_NAME, "{}")
        writer.abort()


def test_reconcile_confirms_registered_and_marks_old_unregistered(store: ArtifactStore) -> None:
    for run_id in ("registered", "unregistered"):
        _commit_pending(store, run_id)

    now = store.reconcile("m", {"registered"})
    assert now.confirmed == ("registered",) and now.orphaned == ()
    assert store.list_runs("m") == ["registered"]
    # Fresh: its process may still be about to register it.
    assert store.unconfirmed_runs("m")["unregistered"]["state"] == "pending"

    later = store.reconcile("m", {"registered"}, now=time.time() + 2 * HOUR)
    assert later.orphaned == ("unregistered",)
    marker = store.unconfirmed_runs("m")["unregistered"]
    assert marker["state"] == "orphaned" and "orphaned_at" in marker
    assert store.list_runs("m") == ["registered"]
    assert store.reconcile("m", {"registered"}, now=time.time() + 3 * HOUR).orphaned == ()
    # Its files are kept: another registry sharing the store may know it after all.
    assert store.verify("m", "unregistered") == []
    assert store.reconcile("m", {"registered", "unregistered"}).confirmed == ("unregistered",)
    assert store.list_runs("m") == ["registered", "unregistered"]


def test_stale_staging_of_dead_writers_goes_live_and_fresh_stay(
    local_store: ArtifactStore,
) -> None:
    dead = local_store.open_run("m", "dead")
    dead.write_text("a.txt", "half")
    dead._release()  # what the kernel does to the lock when the process dies
    live = local_store.open_run("m", "live")
    live.write_text("a.txt", "writing")

    assert local_store.remove_stale_staging("m") == []  # both fresh
    later = time.time() + 2 * HOUR
    (removed,) = local_store.remove_stale_staging("m", now=later)
    assert removed.startswith(".staging-dead-")
    # The live writer's staging is as old, but its lock says it is alive; it still commits.
    assert [p for p in _all_paths(local_store, "m") if ".staging-live-" in p]
    live.commit({})
    assert local_store.list_runs("m") == ["live"]


def test_object_store_staging_is_judged_by_age(memory_store: ArtifactStore) -> None:
    killed = memory_store.open_run("m", "killed")
    killed.write_text("a.txt", "half")
    assert memory_store.remove_stale_staging("m") == []
    assert len(memory_store.remove_stale_staging("m", now=time.time() + 2 * HOUR)) == 1
    assert _all_paths(memory_store, "m") == []


KILLED_WRITER = """
import os, signal, sys
from modelcycle.artifacts import ArtifactStore
writer = ArtifactStore(sys.argv[1]).open_run("m", "killed")
writer.write_text("a.txt", "half")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_next_run_removes_the_staging_of_a_killed_writer(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(root)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL
    (staging,) = (root / "m").glob(".staging-killed-*")
    # The next writer of the model sweeps it once it is old enough (here: at once).
    store = ArtifactStore(str(root), stale_after=0.0)
    with store.open_run("m", "next") as writer:
        writer.write_text("a.txt", "whole")
        writer.commit({})
    assert not staging.exists()
    assert store.list_runs("m") == ["next"]
