"""The cluster profile's Spark pieces: standalone master/worker command lines and status
parsing, the spark-submit command line and zip, the executor environment's cache key;
one real master + worker (marked ``spark``) for registration and worker loss."""

from __future__ import annotations

import subprocess
import sys
import time
import types
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from infra.deploy import executor_env, submit
from infra.errors import ConfigError
from infra.settings import Settings
from infra.stack import spark_standalone as ss
from infra.stack.process import free_port

#: Shape of Spark 4.0's master /json/ page (captured from a real master, trimmed).
MASTER_JSON: dict[str, Any] = {
    "url": "spark://127.0.0.1:17077",
    "workers": [
        {
            "id": "worker-20261126141811-127.0.0.1-33523",
            "host": "127.0.0.1",
            "port": 33523,
            "webuiaddress": "http://127.0.0.1:18081",
            "cores": 2,
            "coresused": 1,
            "coresfree": 1,
            "memory": 3072,
            "memoryused": 1024,
            "memoryfree": 2048,
            "state": "ALIVE",
            "lastheartbeat": 1795702587258,
        },
        {
            "id": "worker-20261126141626-127.0.0.1-43877",
            "host": "127.0.0.1",
            "port": 43877,
            "webuiaddress": "http://127.0.0.1:18082",
            "cores": 2,
            "coresused": 0,
            "memory": 3072,
            "memoryused": 0,
            "state": "DEAD",
        },
    ],
    "aliveworkers": 1,
    "activeapps": [
        {
            "id": "app-20261126142728-0004",
            "starttime": 1795703248000,
            "name": "cadenza-stream-plays",
            "cores": 2,
            "memoryperexecutor": 1024,
            "state": "RUNNING",
            "duration": 88525,
        }
    ],
    "completedapps": [
        {"id": "app-0000", "starttime": 1, "name": "cadenza-etl", "cores": 2, "memoryperslave": 1024,
         "state": "FINISHED", "duration": 41525},
        {"id": "app-0001", "starttime": 2, "name": "cadenza-model-train", "cores": 2,
         "memoryperexecutor": 1024, "state": "FINISHED", "duration": 44126},
    ],
    "status": "ALIVE",
}  # fmt: skip


def cluster_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "cache_dir": tmp_path / "cache",
        "stack_profile": "cluster",
        "spark_master_port": 17077,
        "spark_ui_port": 18080,
        **overrides,
    }
    return Settings(**values)


# --- standalone master and workers ------------------------------------------------------


def test_master_argv_listens_on_loopback_with_its_ports_and_properties(tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path)
    argv = ss.master_argv(settings, Path("/spark"), Path("/x/master.conf"))
    assert argv[:2] == ["/spark/bin/spark-class", "org.apache.spark.deploy.master.Master"]
    pairs = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert pairs == {
        "--host": "127.0.0.1",
        "--port": "17077",
        "--webui-port": "18080",
        "--properties-file": "/x/master.conf",
    }


def test_worker_argv_offers_its_cores_memory_and_ui_port(tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path, spark_worker_cores=3, spark_worker_memory="2g")
    argv = ss.worker_argv(settings, 1, Path("/spark"), Path("/w/worker-1"), Path("/w/worker-1.conf"))
    assert argv[:3] == [
        "/spark/bin/spark-class",
        "org.apache.spark.deploy.worker.Worker",
        "spark://127.0.0.1:17077",
    ]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert pairs["--cores"] == "3"
    assert pairs["--memory"] == "2g"
    assert pairs["--webui-port"] == "18082"  # spark_ui_port + 1 + index
    assert pairs["--work-dir"] == "/w/worker-1"
    assert pairs["--host"] == "127.0.0.1"


def test_components_are_master_then_workers_with_distinct_markers(tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path, spark_workers=3)
    comps = ss.spark_components(settings)
    assert [c.name for c in comps] == ["spark-master", "spark-worker-0", "spark-worker-1", "spark-worker-2"]
    assert comps[0].address == "spark://127.0.0.1:17077"
    assert [c.address for c in comps[1:]] == [f"http://127.0.0.1:{18081 + i}" for i in range(3)]
    markers = {c.proc.marker for c in comps}
    assert len(markers) == 4
    assert all(m.startswith(str((tmp_path / "data").resolve())) for m in markers)
    worker = comps[2]
    assert isinstance(worker, ss.SparkWorker)
    assert worker.work_dir == (tmp_path / "data").resolve() / "spark-cluster" / "worker-1"


def test_daemon_env_points_at_pyspark_and_hides_the_callers_pythonpath() -> None:
    env = ss.daemon_env(Path("/spark"), Path("/logs"), SPARK_WORKER_DIR="/w")
    assert env["SPARK_HOME"] == "/spark"
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert env["PYTHONPATH"] == ""
    assert env["SPARK_WORKER_DIR"] == "/w"


def test_master_properties_disable_rest_server_and_port_hopping() -> None:
    text = ss.properties_text(ss.MASTER_PROPERTIES)
    assert "spark.master.rest.enabled=false\n" in text
    assert "spark.port.maxRetries=0\n" in text


def test_cluster_workers_parses_alive_and_dead_workers() -> None:
    workers = ss.cluster_workers(MASTER_JSON)
    assert [w.id for w in workers] == sorted(w["id"] for w in MASTER_JSON["workers"])
    by_port = {w.webui_port: w for w in workers}
    alive, dead = by_port[18081], by_port[18082]
    assert (alive.state, alive.alive, alive.cores, alive.cores_used) == ("ALIVE", True, 2, 1)
    assert (alive.memory_mb, alive.memory_used_mb, alive.port) == (3072, 1024, 33523)
    assert (dead.state, dead.alive) == ("DEAD", False)
    assert ss.cluster_workers({}) == []


def test_worker_registered_needs_an_alive_entry_on_its_ui_port() -> None:
    assert ss.worker_registered(MASTER_JSON, 18081)
    assert not ss.worker_registered(MASTER_JSON, 18082)  # listed, but DEAD
    assert not ss.worker_registered(MASTER_JSON, 18083)
    assert not ss.worker_registered(None, 18081)


def test_cluster_apps_lists_running_first_then_completed_newest_first() -> None:
    apps = ss.cluster_apps(MASTER_JSON)
    assert [a.name for a in apps] == ["cadenza-stream-plays", "cadenza-model-train", "cadenza-etl"]
    running = apps[0]
    assert (running.state, running.active, running.cores) == ("RUNNING", True, 2)
    assert running.duration_s == pytest.approx(88.525)
    assert apps[2].memory_per_executor_mb == 1024  # older key "memoryperslave"
    assert not apps[2].active


# --- spark-submit ----------------------------------------------------------------------


def conf_of(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "--conf")


def test_submit_argv_ships_zip_and_environment_to_the_cluster_profile_master(tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path, spark_cores_max=3, spark_executor_memory="768m")
    argv = submit.submit_argv(
        settings,
        Path("/b/cadenza.zip"),
        Path("/c/env.tar.gz"),
        [Path("/j/a.jar"), Path("/j/b.jar")],
        ["etl", "run", "--fma-dir", "/fma"],
        spark_home=Path("/spark"),
        entry=Path("/b/cadenza_driver.py"),
        driver_python="/venv/bin/python",
    )
    assert argv[0] == "/spark/bin/spark-submit"
    assert argv[-5:] == ["/b/cadenza_driver.py", "etl", "run", "--fma-dir", "/fma"]
    opts = dict(zip(argv[1:-5:2], argv[2:-5:2], strict=True))
    assert opts["--master"] == "spark://127.0.0.1:17077"
    assert opts["--py-files"] == "/b/cadenza.zip"
    assert opts["--archives"] == "/c/env.tar.gz#environment"
    assert opts["--jars"] == "/j/a.jar,/j/b.jar"
    assert opts["--driver-memory"] == settings.spark_driver_memory
    conf = conf_of(argv)
    assert conf["spark.pyspark.python"] == "./environment/bin/python"
    assert conf["spark.pyspark.driver.python"] == "/venv/bin/python"
    assert conf["spark.executor.memory"] == "768m"
    assert conf["spark.executor.cores"] == "1"
    assert conf["spark.cores.max"] == "3"
    assert conf["spark.driver.host"] == "127.0.0.1"
    assert conf["spark.python.daemon.module"] == "cadenza_spark_daemon"


def test_submit_argv_to_a_remote_master_leaves_the_driver_address_alone(tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path, spark_master="spark://spark.example:7077")
    argv = submit.submit_argv(
        settings, Path("/b/c.zip"), Path("/e.tar.gz"), [], ["stream", "plays"], spark_home=Path("/s")
    )
    assert "--jars" not in argv
    assert "spark.driver.host" not in conf_of(argv)
    assert argv[-3:] == ["/b/cadenza_driver.py", "stream", "plays"]  # entry defaults beside the zip


def test_submit_argv_refuses_a_local_master(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, spark_master="local[*]")
    with pytest.raises(ConfigError, match="CADENZA_STACK_PROFILE=cluster"):
        submit.submit_argv(settings, Path("/z"), Path("/e"), [], ["etl", "run"], spark_home=Path("/s"))


def test_build_zip_is_deterministic_skips_caches_and_imports_namespace_packages(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "nspkg" / "sub" / "__pycache__").mkdir(parents=True)  # namespace package (no __init__)
    (root / "nspkg" / "mod.py").write_text("VALUE = 42\n")
    (root / "nspkg" / "sub" / "__init__.py").write_text("")
    (root / "nspkg" / "sub" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (root / "regular").mkdir()
    (root / "regular" / "__init__.py").write_text("from nspkg.mod import VALUE\n")
    (root / "regular" / "stale.pyc").write_bytes(b"junk")
    first = submit.build_zip(root, tmp_path / "out" / "a.zip", ("nspkg", "regular"))
    second = submit.build_zip(root, tmp_path / "out" / "b.zip", ("nspkg", "regular"))
    assert first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    assert names == [
        "nspkg/", "nspkg/mod.py", "nspkg/sub/", "nspkg/sub/__init__.py", "regular/", "regular/__init__.py",
    ]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-S", "-c", "import regular; print(regular.VALUE, regular.__file__)"],
        env={"PYTHONPATH": str(first)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["42", f"{first}/regular/__init__.py"]
    with pytest.raises(ConfigError):
        submit.build_zip(root, tmp_path / "c.zip", ("missing",))


def test_the_shipped_zip_holds_the_spark_packages_only(tmp_path: Path) -> None:
    names = zipfile.ZipFile(submit.build_zip(submit.repo_root(), tmp_path / "c.zip")).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"schemas", "infra", "etl", "streaming_jobs"}
    assert {"etl/partition.py", "infra/settings/__init__.py", "streaming_jobs/streams/plays.py"} <= set(names)
    assert not any("__pycache__" in n for n in names)


# --- the executors' environment archive ----------------------------------------------


def test_requirement_names_skip_comments_options_and_markers() -> None:
    text = (
        "# c\n\nnumpy>=1.26\nPydantic_Settings >=2 # x\n-r other.txt\n"
        "kafka-python[crc]==2.2 ; python_version>'3'\n"
    )
    assert executor_env.requirement_names(text) == ["numpy", "pydantic-settings", "kafka-python"]


def test_shipped_requirements_cover_executor_imports_but_not_pyspark() -> None:
    names = set(executor_env.requirement_names(executor_env.REQUIREMENTS.read_text()))
    needed = {
        "numpy", "pandas", "pyarrow", "scipy", "librosa", "soundfile", "pymongo", "kafka-python",
        "aiokafka", "pydantic", "pydantic-settings",
    }  # fmt: skip
    assert needed <= names
    assert "pyspark" not in names and "py4j" not in names


def test_driver_pins_use_installed_versions_and_skip_missing() -> None:
    versions = {"numpy": "2.0.1", "pandas": "2.2.3"}

    def version(name: str) -> str:
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    assert executor_env.driver_pins(["pandas", "absent", "numpy"], version) == [
        "numpy==2.0.1",
        "pandas==2.2.3",
    ]


def test_env_key_changes_with_requirements_pins_and_python_only() -> None:
    key = executor_env.env_key("numpy\n", ["numpy==2.0"], "cpython-3.11.7-x86_64")
    assert len(key) == 16
    assert key == executor_env.env_key("numpy\n\n", ["numpy==2.0"], "cpython-3.11.7-x86_64")
    assert key != executor_env.env_key("numpy\npandas\n", ["numpy==2.0"], "cpython-3.11.7-x86_64")
    assert key != executor_env.env_key("numpy\n", ["numpy==2.1"], "cpython-3.11.7-x86_64")
    assert key != executor_env.env_key("numpy\n", ["numpy==2.0"], "cpython-3.12.1-x86_64")
    in_order = executor_env.env_key("x", ["a==1", "b==2"], "p")
    assert in_order == executor_env.env_key("x", ["b==2", "a==1"], "p")


def test_archive_setting_wins_and_must_exist(tmp_path: Path) -> None:
    given = tmp_path / "env.tar.gz"
    given.write_bytes(b"x")
    assert executor_env.executor_env_archive(Settings(spark_executor_env=given)) == given
    with pytest.raises(ConfigError, match="does not exist"):
        executor_env.executor_env_archive(Settings(spark_executor_env=tmp_path / "missing.tar.gz"))


def cache_key(requirements: Path) -> str:
    text = requirements.read_text()
    pins = executor_env.driver_pins(executor_env.requirement_names(text))
    return executor_env.env_key(text, pins, executor_env.python_tag())


def test_a_complete_cached_archive_is_reused_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(cache_dir=tmp_path)
    requirements = tmp_path / "req.txt"
    requirements.write_text("numpy\n")
    archive = executor_env.archive_path(settings, cache_key(requirements))
    archive.write_bytes(b"packed")
    executor_env.complete_marker(archive).write_text("done")

    def no_build(*_args: object, **_kw: object) -> None:
        raise AssertionError("must not build")

    monkeypatch.setattr(executor_env, "_build", no_build)
    assert executor_env.executor_env_archive(settings, requirements=requirements) == archive


def test_a_failed_build_raises_config_error_and_leaves_no_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(cache_dir=tmp_path)
    requirements = tmp_path / "req.txt"
    requirements.write_text("numpy\n")
    key = cache_key(requirements)
    archive = executor_env.archive_path(settings, key)
    archive.write_bytes(b"half-written, no .complete marker")
    calls: list[list[str]] = []

    def failing(argv: list[str], what: str, **_kw: object) -> str:
        calls.append(argv)
        raise ConfigError(f"{what} failed (exit 1)")

    monkeypatch.setitem(sys.modules, "venv_pack", types.ModuleType("venv_pack"))
    monkeypatch.setattr(executor_env, "run_checked", failing)
    with pytest.raises(ConfigError, match="creating the executor venv failed"):
        executor_env.executor_env_archive(settings, requirements=requirements)
    assert calls[0][1:3] == ["-m", "venv"]
    assert not executor_env.complete_marker(archive).exists()
    assert not (tmp_path / "spark-executor-env" / key).exists()  # the half-built venv is removed


# --- a real master and worker ----------------------------------------------------------


@pytest.mark.spark
def test_worker_registers_dies_when_killed_and_comes_back(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        spark_master_port=free_port(),
        spark_ui_port=free_port(),
        spark_workers=1,
        spark_worker_cores=1,
        spark_worker_memory="512m",
    )
    master, worker = ss.spark_components(settings)
    assert isinstance(worker, ss.SparkWorker)
    try:
        master.start(timeout=60)
        worker.start(timeout=60)
        assert master.running() and worker.running()
        doc = master.status()
        assert doc is not None and doc["url"] == master.address
        [alive] = [w for w in ss.cluster_workers(doc) if w.alive]
        assert (alive.webui_port, alive.cores, alive.memory_mb) == (worker.ui_port, 1, 512)

        worker.kill()
        assert not worker.running()
        deadline = time.monotonic() + 30
        while worker.answers() and time.monotonic() < deadline:
            time.sleep(0.2)
        doc = master.status()
        assert doc is not None and not ss.worker_registered(doc, worker.ui_port)
        assert [w.state for w in ss.cluster_workers(doc) if w.id == alive.id] in ([], ["DEAD"])

        worker.start(timeout=60)  # a new worker (new id) on the same ports and work dir
        assert worker.answers()
        doc = master.status()
        assert doc is not None
        assert [w.id for w in ss.cluster_workers(doc) if w.alive] != [alive.id]
    finally:
        worker.stop()
        master.stop()
    assert not master.running() and not worker.running()
    assert not master.answers()
