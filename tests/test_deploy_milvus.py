"""deploy/: what can be checked without a container runtime or a network (there is neither
here, so the compose file is never started): it parses, its app service starts app.py with a
location that the gallery reads as the Milvus service, its image carries what the app needs;
and the app starts and serves on Milvus Lite with the same flags (`--gallery <tmp>/gallery.db`).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from app_server import DATA, AppServer, lfw

from index import open_gallery
from index.stores import store_for
from index.stores.milvus_store import MilvusStore, parse

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def gallery_flag(service: dict) -> str:
    command = service["command"]
    return command[command.index("--gallery") + 1]


def test_the_compose_file_parses_and_points_the_app_at_milvus():
    services = compose()["services"]
    assert {"etcd", "minio", "milvus", "twin"} <= set(services)
    app, milvus = services["twin"], services["milvus"]
    location = gallery_flag(app)
    assert app["command"][:2] == ["python", "app.py"]
    assert store_for(location) is MilvusStore
    target = parse(location)
    assert (target.uri, target.lite) == ("http://milvus:19530", False)     # the service's name and port
    assert app["environment"]["TWIN_GALLERY"] == location                 # (python -m index in the container)
    assert app["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert milvus["command"] == ["milvus", "run", "standalone"]
    environment = milvus["environment"]
    assert environment["ETCD_ENDPOINTS"] == "etcd:2379" and environment["MINIO_ADDRESS"] == "minio:9000"
    assert any(str(port).endswith("19530:19530") for port in milvus["ports"])
    build = app["build"]
    dockerfile = (DEPLOY / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile.is_file()
    text = dockerfile.read_text()
    for needed in ("requirements.txt", "app.py", "engine", "index", "demo", "bench/results"):
        assert f"COPY {needed}" in text, needed
        assert (ROOT / needed).exists(), needed


def test_the_readme_says_it_was_not_run_here_and_when_to_scale_out():
    text = (DEPLOY / "README.md").read_text()
    assert "## When one machine is not enough" in text and "Not run here" in text
    assert "TWIN_MILVUS_TOKEN" in text and "What stays on the app machine" in text


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "lfw").is_dir(), reason=f"no LFW photos in {DATA}")
def test_the_app_serves_on_milvus_lite_with_the_same_flags(tmp_path):
    from gradio_client import Client, handle_file

    location = tmp_path / "gallery.db"
    server = AppServer(tmp_path, "--gallery", str(location))     # the last --gallery wins, as in the compose file
    try:
        client = Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))
        photo = lfw("Serena_Williams", 1)
        _, _, details = client.predict("Serena Williams", [handle_file(str(photo))], api_name="/enroll")
        entry = details["entries"][0]["entry_id"]
        _, _, found, _ = client.predict(handle_file(str(photo)), api_name="/identify")
        assert found["faces"][0]["name"] == "Serena Williams" and found["faces"][0]["entry_id"] == entry
    finally:
        server.stop()
    assert "twin: ready at" in server.log() and (location / "LOCK").exists()
    assert not (location / "gallery.db").exists()                 # Milvus Lite, not a folder gallery
    with open_gallery(str(location)) as g:                        # it stays there once the app has stopped
        assert g.kind == "milvus" and [e.entry_id for e in g.entries("Serena Williams")] == [entry]
