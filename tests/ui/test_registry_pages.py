"""``/models`` and ``/datasets`` of a real ``agent ui`` over a real embedded store."""

from __future__ import annotations

import hashlib
import json
import re
import uuid

import requests

from agent.core.models import Artifact, Model, Task
from agent.files.local import LocalFileStore


def project_name() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


def get(live_ui, path: str, **params) -> requests.Response:
    response = requests.get(live_ui.url + path, params=params, timeout=10)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    return response


def test_models_page_lists_models_with_their_task_and_downloads_the_weights(
    live_ui, store, tmp_path
):
    project = project_name()
    weights = b"fake weights " * 10
    url = LocalFileStore(tmp_path / "files").put_bytes(weights, "models/w.pt")
    task = store.create_task(Task(name="train", project=project))
    sha = hashlib.sha256(weights).hexdigest()
    first = store.create_model(
        Model(name="net", project=project, framework="PyTorch", task=task.id, uri=url,
              sha256=sha, size=len(weights), filename="w.pt")
    )  # fmt: skip
    second = store.create_model(Model(name="net", project=project, framework="PyTorch"))
    page = get(live_ui, "/models", q=project).text
    row = re.search(rf'<tr data-model="{first.id}">(.*?)</tr>', page, re.S).group(1)
    assert f'href="/tasks/{task.id}"' in row and "PyTorch" in row and "130 B" in row
    assert '<td class="num">2</td>' in row  # two versions of "net"
    assert f'href="/models/{first.id}/download"' in row
    other = re.search(rf'<tr data-model="{second.id}">(.*?)</tr>', page, re.S).group(1)
    assert "no weights" in other and "imported" in other
    download = get(live_ui, f"/models/{first.id}/download")
    assert (
        download.content == weights and 'filename="w.pt"' in download.headers["content-disposition"]
    )
    assert requests.get(f"{live_ui.url}/models/{second.id}/download").status_code == 404
    assert 'href="/models" aria-current="page"' in page


def make_dataset(store, files_store, project, name, version, files, parents=()) -> Task:
    """A final dataset version as ``Dataset.finalize`` leaves it: the task, its info, and
    its ``state`` artifact listing each file's blob."""
    entries = {}
    for path, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        entries[path] = [sha, len(data), files_store.put_bytes(data, f"blobs/{sha}")]
    info = {
        "name": name, "project": project, "version": version, "parents": list(parents),
        "final": True, "files": len(files), "size": sum(len(d) for d in files.values()),
        "added": len(files), "modified": 0, "removed": 0,
    }  # fmt: skip
    task = store.create_task(
        Task(name=name, project=project, type="data_processing", runtime={"dataset": info})
    )
    state = json.dumps({"format": 1, "parents": list(parents), "files": entries}).encode()
    uri = files_store.put_bytes(state, f"{task.id}/state.json")
    store.add_artifact(
        task.id, Artifact(name="state", uri=uri, sha256=hashlib.sha256(state).hexdigest(),
                          size=len(state), type="json")
    )  # fmt: skip
    return task


def test_datasets_pages_show_versions_parents_and_download_each_file(live_ui, store, tmp_path):
    project = project_name()
    files = LocalFileStore(tmp_path / "files")
    base = make_dataset(store, files, project, "iris", "1.0.0", {"a.csv": b"1,2\n"})
    child = make_dataset(
        store, files, project, "iris", "1.0.1",
        {"a.csv": b"1,2\n", "sub/b.txt": b"hello"}, parents=[base.id],
    )  # fmt: skip
    page = get(live_ui, "/datasets", q=project).text
    row = re.search(rf'<tr data-dataset="{child.id}">(.*?)</tr>', page, re.S).group(1)
    assert "1.0.1" in row and f'href="/datasets/{base.id}"' in row and "iris v1.0.0" in row
    assert re.findall(r'<td class="num">([^<]+)</td>', row) == ["2", "9 B", "2"]
    assert f'href="/tasks/{child.id}"' in row

    detail = get(live_ui, f"/datasets/{child.id}").text
    assert 'data-file="sub/b.txt"' in detail and f'data-parent="{base.id}"' in detail
    assert 'data-version="1.0.0"' in detail
    link = f"/datasets/{child.id}/files/sub/b.txt"
    assert f'href="{link}"' in detail
    download = get(live_ui, link)
    assert download.content == b"hello" and "attachment" in download.headers["content-disposition"]
    assert requests.get(f"{live_ui.url}/datasets/{child.id}/files/nope").status_code == 404
    assert requests.get(f"{live_ui.url}/datasets/no-such").status_code == 404
