"""Secure defaults (issue 21): no public token secret, demo sign-in on loopback only, the
demo's generated secret and configuration readable by their owner only, Spark's UIs on
loopback, and a compose file whose services restart and whose recommenders own their state."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from gateway import tokens
from infra import spark, supervise
from infra.deploy import submit
from infra.errors import ConfigError
from infra.settings import (
    Settings,
    ensure_token_secret,
    gateway_refusal,
    get_settings,
    is_loopback,
    write_private,
)
from infra.stack import spark_standalone as ss
from infra.stack.process import free_port

ROOT = Path(__file__).resolve().parents[2]
STRONG = "k" * 32
PUBLIC_DEFAULT = "change-me-in-production"  # the default before issue 21


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the gateway's start-up rule (one pure function) -------------------------------------


@pytest.mark.parametrize("secret", ["", "short", PUBLIC_DEFAULT, "x" * 31])
@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "10.1.2.3"])
def test_a_gateway_without_demo_signin_refuses_an_empty_short_or_public_secret(
    secret: str, host: str
) -> None:
    refusal = gateway_refusal(secret, host, demo_signin=False)
    assert refusal is not None
    assert "CADENZA_TOKEN_SECRET" in refusal
    assert "secrets.token_urlsafe(32)" in refusal  # says how to make one


def test_a_gateway_with_a_long_secret_starts_anywhere_without_demo_signin() -> None:
    for host in ("0.0.0.0", "::", "127.0.0.1", "gateway.example"):
        assert gateway_refusal(STRONG, host, demo_signin=False) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
@pytest.mark.parametrize("secret", ["", "short", STRONG])
def test_a_demo_gateway_on_loopback_starts_whatever_its_secret(host: str, secret: str) -> None:
    assert gateway_refusal(secret, host, demo_signin=True) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "gateway.example", "127.example"])
def test_demo_signin_is_never_served_off_loopback_even_with_a_strong_secret(host: str) -> None:
    refusal = gateway_refusal(STRONG, host, demo_signin=True)
    assert refusal is not None
    assert "CADENZA_DEMO_SIGNIN=false" in refusal and "CADENZA_GATEWAY_HOST=127.0.0.1" in refusal


def test_loopback_means_this_machine_only() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.1", "example.com", "::ffff:1.2.3.4"))


def test_the_default_token_secret_is_no_secret_at_all(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.token_secret.get_secret_value() == ""
    assert gateway_refusal(settings.token_secret.get_secret_value(), "0.0.0.0", settings.demo_signin)


def _cadenza(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m infra …`` in ``tmp_path`` (no .env of the checkout), pointed at nothing."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    dead = f"127.0.0.1:{free_port()}"  # today's gateway would start: make it talk to nothing
    return subprocess.run(
        [sys.executable, "-m", "infra", *args],
        env={
            **base,
            "PYTHONPATH": str(ROOT),
            "CADENZA_DATA_DIR": str(tmp_path / "data"),
            "CADENZA_KAFKA_BOOTSTRAP": dead,
            "CADENZA_MONGODB_URI": f"mongodb://{dead}/?serverSelectionTimeoutMS=500",
            **env,
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )


def test_cadenza_gateway_refuses_to_start_without_a_secret_and_says_what_to_set(tmp_path: Path) -> None:
    port = str(free_port())
    started = time.monotonic()
    done = _cadenza(["gateway", "--host", "0.0.0.0", "--port", port], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CADENZA_TOKEN_SECRET" in done.stderr and "token_urlsafe(32)" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30  # refused up front, not after failing to serve


def test_cadenza_gateway_refuses_demo_signin_on_a_public_address(tmp_path: Path) -> None:
    port = str(free_port())
    done = _cadenza(
        ["gateway", "--host", "0.0.0.0", "--port", port],
        tmp_path,
        CADENZA_TOKEN_SECRET=STRONG,
        CADENZA_DEMO_SIGNIN="true",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CADENZA_DEMO_SIGNIN=false" in done.stderr and "Traceback" not in done.stderr


def test_token_create_needs_a_secret_and_uses_the_demos_one(tmp_path: Path) -> None:
    refused = _cadenza(["token", "create", "alice"], tmp_path)
    assert refused.returncode == 1 and "CADENZA_TOKEN_SECRET" in refused.stderr

    secret = ensure_token_secret(tmp_path / "data" / "token-secret")  # what `cadenza demo` does
    signed = _cadenza(["token", "create", "alice"], tmp_path)
    assert signed.returncode == 0, signed.stderr
    claims = tokens.verify(secret, signed.stdout.strip(), now=time.time())
    assert claims.user_id == "alice"


# --- the demo's secret and configuration ---------------------------------------------------


def test_the_demo_generates_a_random_secret_per_data_dir_readable_by_its_owner_only(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path / "a")
    secret = supervise.token_secret(first)
    path = tmp_path / "a" / "token-secret"
    assert mode(path) == 0o600
    assert len(secret) >= 32 and gateway_refusal(secret, "0.0.0.0", demo_signin=False) is None
    assert supervise.token_secret(first) == secret  # created once, then reused
    assert supervise.token_secret(Settings(data_dir=tmp_path / "b")) != secret
    # Processes of the same data dir (gateways, `cadenza token create`) read it …
    assert get_settings(data_dir=tmp_path / "a").token_secret.get_secret_value() == secret
    # … unless a secret is configured, which wins and creates no file.
    given = Settings(data_dir=tmp_path / "c", token_secret=SecretStr(STRONG))
    assert supervise.token_secret(given) == STRONG
    assert not (tmp_path / "c" / "token-secret").exists()


def test_a_secret_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "token-secret"
    path.write_text(STRONG)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        get_settings(data_dir=tmp_path)


def test_the_demo_offers_signin_only_when_its_gateways_listen_on_loopback(tmp_path: Path) -> None:
    local = supervise.render(Settings(data_dir=tmp_path), "/p")
    assert 'CADENZA_DEMO_SIGNIN="True"' in local
    public = supervise.render(Settings(data_dir=tmp_path, gateway_host="0.0.0.0", demo_signin=True), "/p")
    assert 'CADENZA_DEMO_SIGNIN="False"' in public and 'CADENZA_DEMO_SIGNIN="True"' not in public


def test_the_demo_refuses_a_weak_configured_secret_on_a_public_address(tmp_path: Path) -> None:
    weak = Settings(data_dir=tmp_path, gateway_host="0.0.0.0", token_secret=SecretStr("short"))
    with pytest.raises(ConfigError, match="CADENZA_TOKEN_SECRET"):
        supervise.check(weak)
    supervise.check(weak.model_copy(update={"gateway_host": "127.0.0.1"}))  # demo sign-in: fine
    supervise.check(Settings(data_dir=tmp_path / "x", gateway_host="0.0.0.0"))  # generated secret


def test_the_generated_secret_is_never_written_into_the_supervisord_config(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    secret = supervise.token_secret(settings)
    text = supervise.render(settings, "/p")
    assert secret not in text and "CADENZA_TOKEN_SECRET" not in text


def test_the_supervisord_config_holding_secrets_is_written_owner_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, token_secret=SecretStr(STRONG))
    path = supervise.conf_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("old")
    path.chmod(0o644)  # as an earlier version left it
    fresh = Settings(data_dir=tmp_path / "fresh", token_secret=SecretStr(STRONG))
    old_umask = os.umask(0)
    try:
        written = supervise.write_conf(settings, "/p")
        supervise.write_conf(fresh, "/p")
    finally:
        os.umask(old_umask)
    assert written == path
    assert mode(path) == 0o600
    assert mode(supervise.conf_path(fresh)) == 0o600
    assert mode(fresh.run_path) == 0o700  # pid files and the control socket too
    text = path.read_text()
    assert f'CADENZA_TOKEN_SECRET="{STRONG}"' in text
    assert "umask = 077" in text  # the programs' logs (request URLs) are owner-only too


def test_write_private_never_leaves_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "secret.conf"
    old_umask = os.umask(0)
    try:
        write_private(path, "a")
        path.chmod(0o666)
        write_private(path, "b")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "b" and mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.conf"]  # no temporary file left


# --- Spark's web UIs ------------------------------------------------------------------------


def test_a_local_driver_and_its_web_ui_listen_on_loopback(tmp_path: Path) -> None:
    for master in ("local[*]", "local[2]", "spark://127.0.0.1:7077", "spark://localhost:7077"):
        settings = Settings(data_dir=tmp_path, spark_master=master)
        conf = spark.session_conf(settings)
        assert conf["spark.driver.bindAddress"] == "127.0.0.1", master
        assert conf["spark.driver.host"] == "127.0.0.1", master
        assert spark.driver_env(settings) == {"SPARK_LOCAL_IP": "127.0.0.1"}, master  # the UI's address
    cluster = Settings(data_dir=tmp_path, stack_profile="cluster")
    assert spark.driver_env(cluster) == {"SPARK_LOCAL_IP": "127.0.0.1"}


def test_a_remote_masters_driver_is_left_where_its_executors_can_reach_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, spark_master="spark://spark.example:7077")
    assert spark.driver_env(settings) == {}
    assert "spark.driver.bindAddress" not in spark.session_conf(settings)


class _Builder:
    """Stands in for ``SparkSession.builder``: records the configuration, starts no JVM."""

    def __init__(self) -> None:
        self.conf: dict[str, str] = {}
        self.env_at_start: dict[str, str] = {}

    def appName(self, _name: str) -> _Builder:
        return self

    def master(self, master: str) -> _Builder:
        self.conf["spark.master"] = master
        return self

    def config(self, key: str, value: str) -> _Builder:
        self.conf[key] = value
        return self

    def getOrCreate(self) -> Any:
        self.env_at_start = dict(os.environ)
        return type("S", (), {"sparkContext": type("C", (), {"setLogLevel": lambda self, _lvl: None})()})()


def test_spark_session_starts_its_driver_jvm_on_loopback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pyspark.sql import SparkSession

    builder = _Builder()
    monkeypatch.setattr(SparkSession, "builder", builder)
    monkeypatch.setattr(spark, "java_bin", lambda: "java")
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    spark.spark_session(Settings(data_dir=tmp_path, spark_master="local[1]"), "t")
    assert builder.env_at_start["SPARK_LOCAL_IP"] == "127.0.0.1"  # what pyspark's JVM inherits
    assert builder.conf["spark.driver.bindAddress"] == "127.0.0.1"


def test_spark_submit_gives_the_cluster_profiles_driver_a_loopback_ui(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, stack_profile="cluster", spark_master_port=17077)
    argv = submit.submit_argv(
        settings, Path("/z.zip"), Path("/e.tgz"), [], ["etl", "run"], spark_home=Path("/s")
    )
    conf = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--conf")
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert spark.driver_env(settings)["SPARK_LOCAL_IP"] == "127.0.0.1"  # submit.main's environment


def test_the_standalone_master_and_workers_and_their_web_uis_listen_on_loopback(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, stack_profile="cluster")
    master = ss.master_argv(settings, Path("/s"), Path("/m.conf"))
    worker = ss.worker_argv(settings, 0, Path("/s"), Path("/w"), Path("/w.conf"))
    assert master[master.index("--host") + 1] == worker[worker.index("--host") + 1] == "127.0.0.1"
    # Spark binds master and worker web UIs to SPARK_LOCAL_IP, every interface without it.
    assert ss.daemon_env(Path("/s"), Path("/l"))["SPARK_LOCAL_IP"] == "127.0.0.1"


# --- compose ---------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed in this environment")
    doc = yaml.safe_load((ROOT / "infra" / "deploy" / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_every_compose_service_has_a_restart_policy() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name
    assert services["init"]["restart"] == "on-failure"  # one-shot: until it succeeds


def test_each_recommender_replica_has_its_own_state_volume() -> None:
    doc = _compose()
    recommenders = {n: s for n, s in doc["services"].items() if n.startswith("recommender")}
    assert len(recommenders) >= 2
    data_dir = doc["x-cadenza-env"]["CADENZA_DATA_DIR"]
    state: dict[str, str] = {}
    for name, service in recommenders.items():
        assert service.get("deploy", {}).get("replicas", 1) == 1, f"{name}: replicas would share a volume"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert data_dir in mounts, f"{name} keeps its table under {data_dir}: it needs a volume there"
        state[name] = mounts[data_dir]
    assert len(set(state.values())) == len(state), state
    others = [v for n, s in doc["services"].items() if n not in recommenders for v in s.get("volumes", [])]
    assert not any(v.split(":")[0] in state.values() for v in others)


def test_compose_requires_a_token_secret_and_publishes_the_spark_ui_on_loopback_only() -> None:
    doc = _compose()
    assert doc["x-cadenza-env"]["CADENZA_TOKEN_SECRET"].startswith("${CADENZA_TOKEN_SECRET:?")
    for name, service in doc["services"].items():
        for port in service.get("ports", []):
            if name != "gateway":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
