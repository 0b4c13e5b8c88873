"""Every page and fragment of a real ``agent ui`` over a real embedded store, over HTTP."""

from __future__ import annotations

import hashlib
import re
import uuid

import requests

from agent.core.models import RUNS_ON_KEY, Artifact, Task
from agent.files.local import LocalFileStore
from tests.ui.conftest import csrf_of, make_pipeline_run, step


def project_name() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def row(task: Task) -> str:
    return f'<tr data-task="{task.id}">'


def get(live_ui, path: str, **params) -> requests.Response:
    response = requests.get(live_ui.url + path, params=params, timeout=10)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    return response


def test_pipelines_are_grouped_by_name_with_counts_of_their_runs(live_ui, store):
    project = project_name()
    runs = [make_pipeline_run(store, project, "train-pipe") for _ in range(3)]
    make_pipeline_run(store, project, "other-pipe")
    store.enqueue(runs[0].id, "services")
    store.claim(["services"], "w1")
    store.set_status(runs[0].id, "completed")
    store.enqueue(runs[1].id, "services")
    store.claim(["services"], "w1")
    store.set_status(runs[1].id, "failed", "boom")

    for path in ("/", "/pipelines"):
        page = get(live_ui, path, q=project).text
        row = re.search(r'<tr data-pipeline="train-pipe">(.*?)</tr>', page, re.S).group(1)
        cells = re.findall(r'<td class="num">(\d+)</td>', row)
        assert cells == ["3", "0", "1", "1"]  # runs, running, completed, failed
        assert project in row and "other-pipe" in page


def test_runs_table_shows_args_as_columns_and_filters_by_status_and_text(live_ui, store):
    project = project_name()
    slow = make_pipeline_run(store, project, args={"lr": 0.5, "_hidden": 1})
    fast = make_pipeline_run(store, project, args={"lr": 0.01, "epochs": 3})
    store.set_status(fast.id, "stopped")
    page = get(live_ui, "/pipelines/runs", project=project, name="pipeline").text
    assert "<th>lr</th>" in page and "<th>epochs</th>" in page and "_hidden" not in page
    assert slow.id in page and fast.id in page and "New run" in page
    stopped = get(live_ui, "/pipelines/runs", project=project, name="pipeline", status="stopped")
    assert row(fast) in stopped.text and row(slow) not in stopped.text
    by_text = get(live_ui, "/pipelines/runs", project=project, name="pipeline", q="0.5")
    assert row(slow) in by_text.text and row(fast) not in by_text.text


def test_tasks_page_filters_and_pages(live_ui, store):
    project = project_name()
    made = [
        store.create_task(Task(name=f"job-{n}", project=project, type="training", tags=["t"]))
        for n in range(55)
    ]
    odd = store.create_task(Task(name="special-one", project=project, type="testing"))
    store.set_status(odd.id, "stopped")

    first = get(live_ui, "/tasks", project=project).text
    assert first.count('<tr data-task="') == 50 and 'rel="next"' in first
    second = get(live_ui, "/tasks", project=project, page=2).text
    assert second.count('<tr data-task="') == 6 and made[0].id in second
    assert 'rel="next"' not in second
    for params in ({"type": "testing"}, {"status": "stopped"}, {"q": "special"}):
        page = get(live_ui, "/tasks", project=project, **params).text
        assert page.count('<tr data-task="') == 1 and odd.id in page, params
    tagged = get(live_ui, "/tasks", project=project, tag="t").text
    assert odd.id not in tagged and tagged.count('<tr data-task="') == 50


def test_task_info_and_configuration_with_args_first(live_ui, store):
    task = store.create_task(
        Task(
            name="fit", project=project_name(), type="training",
            hyperparams={"General": {"seed": 1}, "Args": {"lr": 0.1}, "Alpha": {"a": 2}},
            configuration={"config.yaml": "layers: 3"},
        )
    )  # fmt: skip
    store.set_status(task.id, "stopped", "aborted by user")
    info = get(live_ui, f"/tasks/{task.id}").text
    assert "aborted by user" in info and 'data-status="stopped"' in info
    config = get(live_ui, f"/tasks/{task.id}", tab="configuration").text
    sections = re.findall(r'data-section="(\w+)"', config)
    assert sections == ["Args", "Alpha", "General"]
    assert "layers: 3" in config and "config.yaml" in config


def test_console_tab_and_its_live_fragment(live_ui, store):
    task = store.create_task(Task(name="chatty", project=project_name()))
    store.enqueue(task.id, "default")
    store.claim(["default"], "w-console")
    store.append_logs(task.id, ["first line", "second <b>line</b>"])
    page = get(live_ui, f"/tasks/{task.id}", tab="console").text
    assert "first line" in page and "second &lt;b&gt;line&lt;/b&gt;" in page
    poll = re.search(r'hx-get="(/tasks/[^"]+/console\?after=(\d+))"', page)
    assert poll and poll.group(2) == "2"
    store.append_logs(task.id, ["third line"])
    fragment = get(live_ui, poll.group(1).replace("&amp;", "&")).text
    assert "third line" in fragment and "first line" not in fragment
    assert 'console?after=3"' in fragment and 'hx-swap-oob="beforeend:#console"' in fragment
    store.set_status(task.id, "completed")
    done = get(live_ui, f"/tasks/{task.id}/console", after=3).text
    assert 'data-done="1"' in done and "hx-trigger" not in done


def test_scalars_json_has_one_chart_per_title_and_nan_as_gaps(live_ui, store):
    task = store.create_task(Task(name="metrics", project=project_name()))
    store.report_scalars(
        task.id,
        [("loss", "train", 0, 1.0), ("loss", "train", 1, float("nan")), ("loss", "val", 1, 0.5),
         ("acc", "val", 0, 0.9)],
    )  # fmt: skip
    charts = get(live_ui, f"/tasks/{task.id}/scalars.json").json()
    assert [c["title"] for c in charts] == ["acc", "loss"]
    loss = charts[1]
    assert loss["series"] == ["train", "val"]
    assert loss["data"] == [[0, 1], [1.0, None], [None, 0.5]]
    assert 'id="scalars"' in get(live_ui, f"/tasks/{task.id}", tab="scalars").text


def test_plots_tab_lists_plots_and_serves_images(live_ui, store, tmp_path):
    files = LocalFileStore(tmp_path / "files")
    png = b"\x89PNG\r\n\x1a\n fake image bytes"
    url = files.put_bytes(png, "samples/x.png")
    task = store.create_task(Task(name="pictures", project=project_name()))
    media = {"kind": "debug_sample", "url": url, "filename": "x.png", "content_type": "image/png"}
    store.report_plot(task.id, "images", "sample", 0, {"data": [], "layout": {}, "media": media})
    store.report_plot(task.id, "curve", "roc", 0, {"data": [{"x": [1], "y": [2]}], "layout": {}})
    page = get(live_ui, f"/tasks/{task.id}", tab="plots").text
    assert f'src="/tasks/{task.id}/plots/0/image"' in page and "curve" in page
    image = get(live_ui, f"/tasks/{task.id}/plots/0/image")
    assert image.content == png and image.headers["content-type"] == "image/png"
    assert requests.get(f"{live_ui.url}/tasks/{task.id}/plots/1/image").status_code == 404


def test_artifacts_tab_and_download(live_ui, store, tmp_path):
    files = LocalFileStore(tmp_path / "files")
    data = b"a,b\n1,2\n"
    url = files.put_bytes(data, "artifacts/table.csv")
    task = store.create_task(Task(name="outputs", project=project_name()))
    sha = hashlib.sha256(data).hexdigest()
    store.add_artifact(
        task.id,
        Artifact(name="table", uri=url, sha256=sha, size=len(data), type="csv", preview="a,b"),
    )
    page = get(live_ui, f"/tasks/{task.id}", tab="artifacts").text
    assert 'data-artifact="table"' in page and sha[:12] in page and "8 B" in page
    download = get(live_ui, f"/tasks/{task.id}/artifacts/table")
    assert download.content == data and "attachment" in download.headers["content-disposition"]


def test_dag_json_and_its_live_status(live_ui, store):
    child = store.create_task(Task(name="step_two", project=project_name()))
    nodes = [
        step("step_one", "completed", started=10.0, completed=12.5, cached=True),
        step("step_two", "in_progress", ["step_one"], task_id=child.id, started=12.5),
        step("step_three", "pending", ["step_two"]),
    ]
    run = make_pipeline_run(store, project_name(), nodes=nodes)
    graph = get(live_ui, f"/tasks/{run.id}/dag.json").json()
    assert [n["name"] for n in graph["nodes"]] == ["step_one", "step_two", "step_three"]
    assert graph["edges"] == [["step_one", "step_two"], ["step_two", "step_three"]]
    first = graph["nodes"][0]
    assert first["cached"] is True and first["duration"] == "2.5s"
    assert graph["nodes"][1]["task_id"] == child.id
    assert 'id="dag"' in get(live_ui, f"/tasks/{run.id}").text

    nodes[1]["status"], nodes[1]["completed"] = "completed", 14.0
    store.merge_runtime(run.id, {"pipeline": {"nodes": nodes, "edges": []}})
    status = get(live_ui, f"/tasks/{run.id}/dag-status.json").json()
    assert status["steps"]["step_two"]["status"] == "completed"
    assert status["steps"]["step_two"]["duration"] == "1.5s"
    plain = store.create_task(Task(name="not-a-pipeline", project=project_name()))
    assert requests.get(f"{live_ui.url}/tasks/{plain.id}/dag.json").status_code == 404
    queued = make_pipeline_run(store, project_name())  # its controller reported no DAG yet
    assert get(live_ui, f"/tasks/{queued.id}/dag.json").json() == {"nodes": [], "edges": []}
    assert 'id="dag"' in get(live_ui, f"/tasks/{queued.id}").text


def test_new_run_clones_with_the_edited_args_and_enqueues_it(live_ui, store, browser_session):
    nodes = [step("step_one", "completed")]
    run = make_pipeline_run(
        store, project_name(), args={"mock_parameter": "mock", "n": 3, "_secret": "k"},
        nodes=nodes,
    )  # fmt: skip
    form = browser_session.get(f"{live_ui.url}/tasks/{run.id}/new-run").text
    assert 'name="arg:mock_parameter" value="mock"' in form and "_secret" not in form
    assert 'name="queue" list="queue-names" value="services"' in form
    answer = browser_session.post(
        f"{live_ui.url}/tasks/{run.id}/new-run",
        data={"csrf": csrf_of(browser_session), "arg:mock_parameter": "changed", "arg:n": "5",
              "queue": "services"},
        allow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303
    new_id = answer.headers["location"].rsplit("/", 1)[1]
    new = store.get_task(new_id)
    assert new.id != run.id and new.status == "queued" and new.queue == "services"
    assert new.hyperparams["Args"] == {"mock_parameter": "changed", "n": 5, "_secret": "k"}
    assert "pipeline" not in new.runtime and new.runtime["cloned_from"] == run.id
    assert new_id in store.queue_entries("services")
    assert browser_session.get(f"{live_ui.url}{answer.headers['location']}").ok


def test_abort_and_enqueue_from_the_task_page(live_ui, store, browser_session):
    task = store.create_task(Task(name="victim", project=project_name()))
    page = browser_session.get(f"{live_ui.url}/tasks/{task.id}").text
    assert 'id="enqueue"' in page and 'id="abort"' not in page
    token = csrf_of(browser_session)
    queue = f"q-{uuid.uuid4().hex[:6]}"
    answer = browser_session.post(
        f"{live_ui.url}/tasks/{task.id}/enqueue", data={"csrf": token, "queue": queue}
    )
    assert answer.ok and f"queued on &#39;{queue}&#39;" in answer.text
    assert store.get_task(task.id).status == "queued"
    assert 'id="abort"' in answer.text
    answer = browser_session.post(f"{live_ui.url}/tasks/{task.id}/abort", data={"csrf": token})
    assert answer.ok and "stopped" in answer.text
    stopped = store.get_task(task.id)
    assert stopped.status == "stopped" and stopped.status_message == "aborted by user"
    again = browser_session.post(f"{live_ui.url}/tasks/{task.id}/abort", data={"csrf": token})
    assert "only queued or running tasks can be aborted" in again.text


def test_a_post_without_the_csrf_token_is_refused(live_ui, store, browser_session):
    task = store.create_task(Task(name="target", project=project_name()))
    store.enqueue(task.id, "default")
    for data, headers in (({}, {}), ({"csrf": "forged"}, {}), ({}, {"X-CSRF-Token": "forged"})):
        answer = browser_session.post(
            f"{live_ui.url}/tasks/{task.id}/abort", data=data, headers=headers
        )
        assert answer.status_code == 403, (data, headers)
    assert store.get_task(task.id).status == "queued"
    header = {"X-CSRF-Token": csrf_of(browser_session)}
    assert browser_session.post(f"{live_ui.url}/tasks/{task.id}/abort", headers=header).ok
    assert store.get_task(task.id).status == "stopped"


def test_task_info_names_the_node_a_glue_runs_the_task_on(live_ui, store):
    queue = f"q-{uuid.uuid4().hex[:6]}"
    task = store.create_task(Task(name="on-node", project=project_name()), queue=queue)
    assert store.claim([queue], "glue-1").id == task.id
    store.merge_runtime(task.id, {RUNS_ON_KEY: {"worker": "glue-1", "node": "slurm:n1"}})
    assert "<dd>slurm:n1 (via glue-1)</dd>" in get(live_ui, f"/tasks/{task.id}").text


def test_queues_and_workers_pages(live_ui, store):
    queue = f"q-{uuid.uuid4().hex[:6]}"
    waiting = store.create_task(Task(name="waiting", project=project_name()), queue=queue)
    store.register_worker("ui-worker-1", [queue], stats={"cpu_percent": 12.5})
    queues = get(live_ui, "/queues").text
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', queues, re.S).group(1)
    assert waiting.id in row and "ui-worker-1" in row
    workers = get(live_ui, "/workers").text
    assert 'data-worker="ui-worker-1"' in workers and "12%" in workers


def test_workers_stats_json_has_each_workers_chart_points_after_a_time(live_ui, store):
    worker = f"ui-gpu-{uuid.uuid4().hex[:6]}"
    store.register_worker(worker, ["default"])
    gpus = [
        {"index": 0, "name": "H100", "utilization_pct": 80.0, "memory_used_mib": 40960.0,
         "memory_total_mib": 81920.0},
        {"index": 1, "name": "H100", "utilization_pct": 20.0},
    ]  # fmt: skip
    store.heartbeat(worker, stats={"cpu_pct": 10.0, "memory_pct": 50.0, "gpus": gpus})
    store.heartbeat(worker, stats={"cpu_pct": 30.0, "memory_used_mib": 1, "memory_total_mib": 4})
    data = get(live_ui, "/workers/stats.json").json()
    row = data["workers"][worker]
    assert row["cpu"] == 30.0 and row["memory"] == 25.0 and row["gpus"] == []
    series = data["series"][worker]
    assert series["cpu"] == [10.0, 30.0] and series["memory"] == [50.0, 25.0]
    assert series["gpus"] == [[80.0, None], [20.0, None]]  # the second beat had no GPUs
    after = series["ts"][0]
    newer = get(live_ui, f"/workers/stats.json?after={after}").json()["series"][worker]
    assert newer["cpu"] == [30.0] and newer["ts"] == series["ts"][1:]

    store.heartbeat(worker, stats={"cpu_pct": 5.0, "gpus": gpus})
    page = get(live_ui, "/workers").text
    cells = re.search(rf'<tr data-worker="{worker}">(.*?)</tr>', page, re.S).group(1)
    assert "80% · mem 50%" in cells and "20%" in cells and "5%" in cells
    store.unregister_worker(worker)


def test_unknown_task_is_a_404_page(live_ui):
    answer = requests.get(f"{live_ui.url}/tasks/no-such-task")
    assert answer.status_code == 404 and "There is no task no-such-task" in answer.text


def test_agent_ui_refuses_a_public_bind_without_a_token(agent_home_env):
    from click.testing import CliRunner

    from agent.cli.main import cli

    result = CliRunner().invoke(cli, ["ui", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to serve the UI on 0.0.0.0 without a token" in result.output


def test_code_tab_shows_the_code_or_the_entry_point_and_diff_escaped(live_ui, store):
    from agent.core.models import Script

    inline = store.create_task(
        Task(name="inline", project=project_name(), script=Script(code="print('<hi>')\n"))
    )
    page = get(live_ui, f"/tasks/{inline.id}", tab="code").text
    assert 'id="code"' in page and "print(&#39;&lt;hi&gt;&#39;)" in page
    diff = "--- a/x.py\n+++ b/x.py\n-old <tag>\n+new\n"
    repo = store.create_task(
        Task(name="repo", project=project_name(),
             script=Script(entry_point="train.py", working_dir="src", diff=diff))
    )  # fmt: skip
    page = get(live_ui, f"/tasks/{repo.id}", tab="code").text
    assert "<code>train.py</code> in <code>src</code>" in page
    assert '<span class="del">-old &lt;tag&gt;' in page and '<span class="add">+new' in page
    assert 'role="tab" href="/tasks/' in page and "?tab=code" in page


def test_clone_with_edits_sets_name_every_section_and_the_queue(live_ui, store, browser_session):
    source = store.create_task(
        Task(name="fit", project=project_name(), type="training",
             hyperparams={"Args": {"lr": 0.1, "note": "7", "_id": "k"},
                          "General": {"seed": 1}})
    )  # fmt: skip
    form = browser_session.get(f"{live_ui.url}/tasks/{source.id}/clone").text
    assert 'name="hp:Args:lr" value="0.1"' in form and 'name="hp:General:seed"' in form
    assert "_id" not in form and 'name="name" value="fit"' in form
    assert (
        f'href="/tasks/{source.id}/clone"'
        in browser_session.get(f"{live_ui.url}/tasks/{source.id}").text
    )
    queue = f"q-{uuid.uuid4().hex[:6]}"
    answer = browser_session.post(
        f"{live_ui.url}/tasks/{source.id}/clone",
        data={"csrf": csrf_of(browser_session), "name": "fit v2", "hp:Args:lr": "0.5",
              "hp:Args:note": "8", "hp:General:seed": "2", "enqueue": "1", "queue": queue},
        allow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303
    made = store.get_task(answer.headers["location"].rsplit("/", 1)[1])
    assert made.name == "fit v2" and made.status == "queued" and made.queue == queue
    assert made.hyperparams == {"Args": {"lr": 0.5, "note": "8", "_id": "k"},
                                "General": {"seed": 2}}  # fmt: skip
    assert made.runtime["cloned_from"] == source.id

    draft = browser_session.post(
        f"{live_ui.url}/tasks/{source.id}/clone",
        data={"csrf": csrf_of(browser_session), "name": "", "queue": queue},
    )
    assert draft.ok
    drafted = store.get_task(draft.url.rsplit("/", 1)[1])
    assert drafted.status == "created" and drafted.name == "fit"
    refused = requests.post(f"{live_ui.url}/tasks/{source.id}/clone", data={"name": "x"})
    assert refused.status_code == 403


def test_a_tab_as_a_fragment_for_the_dag_side_panel(live_ui, store):
    task = store.create_task(Task(name="step", project=project_name()))
    store.enqueue(task.id, "default")
    store.claim(["default"], "w-fragment")
    store.append_logs(task.id, ["hello panel"])
    console = get(live_ui, f"/tasks/{task.id}", tab="console", fragment=1).text
    assert "<html" not in console and 'id="panel-console"' in console and "hello panel" in console
    assert 'console?after=1&amp;panel=1"' in console and 'id="console"' not in console
    store.append_logs(task.id, ["second"])
    more = get(live_ui, f"/tasks/{task.id}/console", after=1, panel=1).text
    assert "beforeend:#panel-console" in more and 'id="panel-console-poll"' in more
    scalars = get(live_ui, f"/tasks/{task.id}", tab="scalars", fragment=1).text
    assert 'id="panel-scalars"' in scalars and 'id="scalars-empty"' not in scalars


def test_queue_entries_in_order_move_and_remove(live_ui, store, browser_session):
    queue = f"q-{uuid.uuid4().hex[:6]}"
    project = project_name()
    a, b, c = (
        store.create_task(Task(name=f"job-{n}", project=project), queue=queue) for n in "abc"
    )
    page = browser_session.get(f"{live_ui.url}/queues").text
    section = re.search(
        rf'<section class="queue-entries" id="queue-{queue}".*?</section>', page, re.S
    )
    assert re.findall(r'<tr data-entry="(\w+)">', section.group(0)) == [a.id, b.id, c.id]
    token = csrf_of(browser_session)
    moved = browser_session.post(
        f"{live_ui.url}/queues/move", data={"csrf": token, "task": c.id, "position": "0"}
    )
    assert moved.ok and "moved to position 1 of 3" in moved.text
    assert store.queue_entries(queue) == [c.id, a.id, b.id]
    removed = browser_session.post(
        f"{live_ui.url}/queues/remove", data={"csrf": token, "task": a.id}
    )
    assert removed.ok and "removed job-a" in removed.text
    assert store.queue_entries(queue) == [c.id, b.id]
    assert store.get_task(a.id).status == "created"
    again = browser_session.post(
        f"{live_ui.url}/queues/move", data={"csrf": token, "task": a.id, "position": "0"}
    )
    assert "is not queued" in again.text
    forged = browser_session.post(f"{live_ui.url}/queues/remove", data={"task": b.id})
    assert forged.status_code == 403 and store.get_task(b.id).status == "queued"


def test_compare_shows_args_side_by_side_and_overlays_scalars(live_ui, store):
    project = project_name()
    one = make_pipeline_run(store, project, args={"lr": 0.1, "epochs": 3, "_x": 1})
    two = make_pipeline_run(store, project, args={"lr": 0.5, "epochs": 3})
    store.report_scalars(one.id, [("loss", "train", 0, 1.0), ("loss", "train", 1, 0.5)])
    store.report_scalars(two.id, [("loss", "train", 1, 0.7), ("acc", "val", 0, 0.9)])
    runs = get(live_ui, "/pipelines/runs", project=project, name="pipeline").text
    assert f'name="ids" value="{one.id}" form="compare-form"' in runs

    page = get(live_ui, "/compare", ids=f"{one.id},{two.id}").text
    lr = re.search(r'<tr data-param="Args/lr" class="differs".*?</tr>', page, re.S).group(0)
    assert re.findall(r"<code>([^<]*)</code>", lr) == ["0.1", "0.5"]
    same = re.search(r'<tr data-param="Args/epochs" >(.*?)</tr>', page, re.S)
    assert same and "differs" not in same.group(0) and "_x" not in page
    assert page.index(f'data-run="{one.id}"') < page.index(f'data-run="{two.id}"')

    charts = get(live_ui, "/compare/scalars.json", ids=[one.id, two.id]).json()
    assert [c["title"] for c in charts] == ["acc", "loss"]
    loss = charts[1]
    assert loss["series"] == [one.id[:8], two.id[:8]] and loss["data"] == [
        [0, 1], [1.0, 0.5], [None, 0.7]
    ]  # fmt: skip
    too_few = requests.get(f"{live_ui.url}/compare", params={"ids": one.id})
    assert too_few.status_code == 400 and "pick 2 to 5 runs" in too_few.text
    gone = requests.get(f"{live_ui.url}/compare", params={"ids": f"{one.id},nope"})
    assert gone.status_code == 404
