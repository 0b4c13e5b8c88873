"""The UI in a real browser: Playwright driving the system's Chromium (Debian's
``chromium``; no browser download) against a real ``agent ui``.

Screenshots of each page land in ``tests/ui/screenshots/`` (not committed).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core.models import Task
from tests.services import require
from tests.ui.conftest import make_pipeline_run, step

SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
#: How long a status change may take to show (the page polls every second).
LIVE_MS = 2500


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require("Playwright (pip install 'pipeline-agent[test]')", sync_playwright is not None)
    executable = chromium_path()
    require("Chromium (apt-get install -y chromium)", executable is not None)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    snap(page, request.node.name)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def snap(page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def running_controller(store, nodes) -> Task:
    run = make_pipeline_run(store, f"b-{uuid.uuid4().hex[:8]}", nodes=nodes)
    queue = f"services-{uuid.uuid4().hex[:8]}"  # its own: other tests leave runs queued
    store.enqueue(run.id, queue)
    assert store.claim([queue], "browser-services-worker").id == run.id
    return run


def test_dag_nodes_follow_step_statuses_live(live_ui, store, page):
    child = store.create_task(Task(name="step_two", project="browser"))
    nodes = [
        step("step_one", "completed", started=1.0, completed=3.0, cached=True),
        step("step_two", "in_progress", ["step_one"], task_id=child.id, started=3.0),
        step("step_three", "pending", ["step_two"]),
        step("step_four", "pending", ["step_two"]),
    ]
    run = running_controller(store, nodes)
    page.goto(f"{live_ui.url}/tasks/{run.id}")
    page.wait_for_selector('[data-step="step_four"][data-status="pending"]')
    assert page.locator("#dag .node").count() == 4
    assert page.locator("#dag svg path").count() == 3
    assert "cached" in page.locator('[data-step="step_one"]').inner_text()

    nodes[1].update(status="completed", completed=5.0)
    nodes[2].update(status="in_progress", started=5.0, task_id=child.id)
    store.merge_runtime(run.id, {"pipeline": {"nodes": nodes, "edges": []}})
    page.wait_for_selector('[data-step="step_two"][data-status="completed"]', timeout=LIVE_MS)
    page.wait_for_selector('[data-step="step_three"][data-status="in_progress"]', timeout=LIVE_MS)
    assert page.locator('[data-step="step_two"]').inner_text().count("2.0s") == 1
    snap(page, "pipeline-dag")


def test_a_queued_run_draws_its_dag_once_its_controller_reports_it(live_ui, store, page):
    run = make_pipeline_run(store, f"b-{uuid.uuid4().hex[:8]}")  # no DAG yet
    store.enqueue(run.id, "services")
    page.goto(f"{live_ui.url}/tasks/{run.id}")
    page.wait_for_selector("#dag >> text=No steps reported yet.")
    store.claim(["services"], "browser-services-worker")
    nodes = [
        step("step_one", "in_progress", started=1.0),
        step("step_two", "pending", ["step_one"]),
    ]
    store.merge_runtime(run.id, {"pipeline": {"nodes": nodes, "edges": []}})
    page.wait_for_selector('[data-step="step_two"][data-status="pending"]', timeout=LIVE_MS)
    page.wait_for_selector('#task-status [data-status="in_progress"]', timeout=LIVE_MS)
    assert page.locator("#dag .node").count() == 2


def test_a_dag_node_opens_its_step_in_the_side_panel(live_ui, store, page):
    child = store.create_task(
        Task(name="step_two", project="browser", hyperparams={"Args": {"depth": 4}})
    )
    store.enqueue(child.id, "default")
    store.claim(["default"], "browser-panel-worker")
    store.append_logs(child.id, ["training step two"])
    store.report_scalars(child.id, [("loss", "train", i, 1.0 / (i + 1)) for i in range(5)])
    nodes = [
        step("step_one", "completed"),
        step("step_two", "in_progress", ["step_one"], task_id=child.id, started=3.0),
        step("step_three", "pending", ["step_two"]),
    ]
    run = running_controller(store, nodes)
    page.goto(f"{live_ui.url}/tasks/{run.id}")
    page.click('[data-step="step_two"]')
    panel = page.locator("#step-panel")
    panel.wait_for(state="visible")
    assert page.url.endswith(f"/tasks/{run.id}")  # stayed on the pipeline
    page.wait_for_selector("#panel-console >> text=training step two")
    assert panel.locator(".step-name").inner_text() == "step_two"
    assert panel.locator(".full-page").get_attribute("href") == f"/tasks/{child.id}?tab=console"
    store.append_logs(child.id, ["a later line"])
    page.wait_for_selector("#panel-console >> text=a later line", timeout=LIVE_MS)
    panel.locator('[data-tab="configuration"]').click()
    page.wait_for_selector('#step-panel [data-section="Args"] >> text=depth')
    panel.locator('[data-tab="scalars"]').click()
    page.wait_for_selector('#panel-scalars [data-chart="loss"] canvas')
    panel.locator('[data-tab="artifacts"]').click()
    page.wait_for_selector("#step-panel >> text=No artifacts.")
    snap(page, "dag-step-panel")
    page.click('[data-step="step_three"]')
    page.wait_for_selector("#step-panel >> text=has not started")
    panel.locator(".close").click()
    panel.wait_for(state="hidden")
    page.goto(f"{live_ui.url}" + page.locator('[data-step="step_two"]').get_attribute("href"))
    assert "step_two" in page.locator("h1").inner_text()  # the node still links its page


def test_console_tails_a_running_task(live_ui, store, page):
    task = store.create_task(Task(name="tail-me", project="browser"))
    store.enqueue(task.id, "default")
    store.claim(["default"], "browser-worker")
    store.append_logs(task.id, ["epoch 1"])
    page.goto(f"{live_ui.url}/tasks/{task.id}?tab=console")
    page.wait_for_selector("#console >> text=epoch 1")
    store.append_logs(task.id, ["epoch 2", "epoch 3"])
    page.wait_for_selector("#console >> text=epoch 3", timeout=LIVE_MS)
    assert page.locator("#console .line").count() == 3
    page.fill("#console-search", "epoch 2")
    assert page.locator("#console .line:visible").count() == 1


def test_a_long_console_opens_on_its_tail_and_loads_earlier_lines(live_ui, store, page):
    from agent.ui.pages import CONSOLE_BATCH

    task = store.create_task(Task(name="long-log", project="browser"))
    total = 2 * CONSOLE_BATCH + 100
    store.append_logs(task.id, [f"step {n} needle-{n % 1000 == 7}" for n in range(1, total + 1)])
    page.goto(f"{live_ui.url}/tasks/{task.id}?tab=console")
    lines = page.locator("#console .line")
    assert lines.count() == CONSOLE_BATCH
    assert lines.last.inner_text().startswith(f"step {total} ")
    assert lines.first.inner_text().startswith(f"step {total - CONSOLE_BATCH + 1} ")

    page.fill("#console-search", "needle-True")  # lines 7, 1007, ... : most not loaded
    loaded = sum(1 for n in range(total - CONSOLE_BATCH + 1, total + 1) if n % 1000 == 7)
    page.wait_for_selector("#console-matches .line")
    assert page.locator("#console .line:visible").count() == loaded
    earlier = [n for n in range(1, total - CONSOLE_BATCH + 1) if n % 1000 == 7]
    matches = page.locator("#console-matches .line .seq").all_inner_texts()
    assert [int(seq) for seq in matches] == earlier

    page.fill("#console-search", "")
    page.wait_for_selector("#console-matches .line", state="detached")
    page.click("#console-earlier button")
    page.wait_for_function(
        f"document.querySelectorAll('#console .line').length === {2 * CONSOLE_BATCH}"
    )
    assert lines.first.inner_text().startswith("step 101 ")
    page.click("#console-earlier button")
    page.wait_for_function(f"document.querySelectorAll('#console .line').length === {total}")
    assert lines.first.inner_text().startswith("step 1 ")
    assert page.locator("#console-earlier button").count() == 0  # the whole log is there


def test_scalars_draw_one_chart_per_title(live_ui, store, page):
    task = store.create_task(Task(name="charts", project="browser"))
    points = [("loss", "train", i, 1.0 / (i + 1)) for i in range(20)]
    points += [("loss", "val", 3, float("nan")), ("accuracy", "val", 1, 0.8)]
    store.report_scalars(task.id, points)
    page.goto(f"{live_ui.url}/tasks/{task.id}?tab=scalars")
    page.wait_for_selector('[data-chart="loss"] canvas')
    assert page.locator(".chart").count() == 2


def test_new_run_from_the_browser(live_ui, store, page):
    run = make_pipeline_run(
        store, f"b-{uuid.uuid4().hex[:8]}", args={"mock_parameter": "mock"}, nodes=[]
    )
    page.goto(f"{live_ui.url}/pipelines/runs?project={run.project}&name={run.name}")
    assert page.locator("#runs tbody tr").count() == 1
    page.click("#runs th:has-text('Status')")
    assert page.get_attribute("#runs th:has-text('Status')", "aria-sort") == "ascending"
    page.click("text=+ New run")
    page.fill('input[name="arg:mock_parameter"]', "from the browser")
    page.click("#new-run-form button[type=submit]")
    page.wait_for_url(lambda url: run.id not in url and "/tasks/" in url)
    new_id = page.url.rsplit("/", 1)[1]
    new = store.get_task(new_id)
    assert new.hyperparams["Args"]["mock_parameter"] == "from the browser"
    assert new.status == "queued" and new.queue == "services"


def test_abort_from_the_task_page(live_ui, store, page):
    task = store.create_task(Task(name="abort-me", project="browser"))
    store.enqueue(task.id, "default")
    store.claim(["default"], "browser-worker-2")
    page.goto(f"{live_ui.url}/tasks/{task.id}")
    page.click("#abort")
    page.wait_for_selector('#task-status [data-status="stopped"]')
    assert store.get_task(task.id).status == "stopped"


def test_info_tab_and_actions_follow_the_task_to_its_end(live_ui, store, page):
    task = store.create_task(Task(name="ends-live", project="browser"), queue="default")
    page.goto(f"{live_ui.url}/tasks/{task.id}")
    assert page.locator("#abort").is_visible()
    store.claim(["default"], "browser-worker-3")
    page.wait_for_selector('#tab-info dd:has-text("browser-worker-3")', timeout=3 * LIVE_MS)
    store.set_status(task.id, "failed", "exit code 1")
    page.wait_for_selector('#task-status [data-status="failed"]', timeout=3 * LIVE_MS)
    page.wait_for_selector("#tab-info .message:has-text('exit code 1')")
    assert page.locator("#abort").count() == 0
    assert page.locator("#enqueue").is_visible()  # a failed task can be enqueued again
    assert page.locator('#tab-info [data-status="failed"]').count() == 1


def test_a_pipeline_runs_actions_follow_it_to_its_end(live_ui, store, page):
    run = running_controller(store, [step("only", "in_progress")])
    page.goto(f"{live_ui.url}/tasks/{run.id}")
    assert page.locator("#abort").is_visible()
    store.merge_runtime(run.id, {"pipeline": {"nodes": [step("only", "completed")], "edges": []}})
    store.set_status(run.id, "completed")
    page.wait_for_selector('#task-status [data-status="completed"]', timeout=LIVE_MS)
    page.wait_for_selector('#tab-info [data-status="completed"]', timeout=LIVE_MS)
    assert page.locator("#abort").count() == 0


def test_relative_ages_tick_in_the_page(live_ui, store, page):
    task = store.create_task(Task(name="ageing", project=f"b-{uuid.uuid4().hex[:8]}"))
    page.goto(f"{live_ui.url}/tasks/{task.id}")
    created = page.locator("#tab-info time").first
    first = created.inner_text()
    assert first.endswith("s ago")
    title = created.get_attribute("title")
    page.wait_for_function(
        "([el, first]) => el.textContent !== first", arg=[created.element_handle(), first],
        timeout=3 * LIVE_MS,
    )  # fmt: skip
    later = created.inner_text()
    assert later.endswith("s ago") and int(later[:-5]) > int(first[:-5])
    assert created.get_attribute("title") == title  # the exact time stays on hover


def test_every_listing_page_renders(live_ui, page):
    for path in ("/pipelines", "/tasks", "/queues", "/workers"):
        page.goto(live_ui.url + path)
        assert page.locator("h1").count() == 1, path
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(live_ui.url + "/tasks")
    snap(page, "tasks-phone")


def test_tables_sort_by_a_clicked_column(live_ui, store, page):
    project = f"b-{uuid.uuid4().hex[:8]}"
    for name in ("beta", "alpha", "gamma"):
        store.create_task(Task(name=name, project=project))
    page.goto(f"{live_ui.url}/tasks?project={project}")
    names = "#tasks tbody tr td:nth-child(2)"
    assert page.locator(names).all_inner_texts() == ["gamma", "alpha", "beta"]  # newest first
    page.click("#tasks th:has-text('Name')")
    assert page.locator(names).all_inner_texts() == ["alpha", "beta", "gamma"]
    page.click("#tasks th:has-text('Name')")
    assert page.locator(names).all_inner_texts() == ["gamma", "beta", "alpha"]


def test_queue_entries_move_and_remove_from_the_queues_page(live_ui, store, page):
    queue = f"bq-{uuid.uuid4().hex[:6]}"
    a, b, c = (
        store.create_task(Task(name=f"entry-{n}", project="browser"), queue=queue).id for n in "abc"
    )
    page.goto(f"{live_ui.url}/queues")
    rows = f"#queue-{queue} tr[data-entry]"
    order = lambda: page.eval_on_selector_all(rows, "rs => rs.map(r => r.dataset.entry)")  # noqa: E731
    assert order() == [a, b, c]
    with page.expect_navigation():
        page.click(f'#queue-{queue} tr[data-entry="{a}"] button.down')
    page.wait_for_selector("text=moved to position 2 of 3")
    assert order() == [b, a, c] == store.queue_entries(queue)
    with page.expect_navigation():
        page.click(f'#queue-{queue} tr[data-entry="{c}"] button.up')
    page.wait_for_selector("text=moved to position 2 of 3")
    assert order() == [b, c, a]
    with page.expect_navigation():
        page.click(f'#queue-{queue} tr[data-entry="{b}"] button.remove')
    page.wait_for_selector("text=removed entry-b")
    assert order() == [c, a] == store.queue_entries(queue)
    snap(page, "queues")


def test_compare_picked_runs_from_the_runs_table(live_ui, store, page):
    project = f"b-{uuid.uuid4().hex[:8]}"
    runs = [make_pipeline_run(store, project, args={"lr": lr}) for lr in (0.1, 0.2, 0.3)]
    for n, run in enumerate(runs):
        store.report_scalars(run.id, [("loss", "train", i, 1.0 / (i + n + 1)) for i in range(5)])
    page.goto(f"{live_ui.url}/pipelines/runs?project={project}&name=pipeline")
    for run in runs[:2]:
        page.check(f'input[name="ids"][value="{run.id}"]')
    page.click("#compare")
    page.wait_for_url("**/compare?**")
    page.wait_for_selector('[data-chart="loss"] canvas')
    assert page.locator("#compare-params th[data-run]").count() == 2
    assert page.locator('tr[data-param="Args/lr"].differs').count() == 1
    legend = page.locator('[data-chart="loss"] .u-legend').inner_text()
    assert runs[0].id[:8] in legend and runs[1].id[:8] in legend and runs[2].id[:8] not in legend
    snap(page, "compare")


def test_workers_draw_live_cpu_memory_and_gpu_charts(live_ui, store, page):
    cpu_only, gpu_host = (f"{kind}-{uuid.uuid4().hex[:6]}" for kind in ("cpu", "gpu"))
    store.register_worker(cpu_only, ["default"])
    store.register_worker(gpu_host, ["gpu"])
    gpus = [{"index": 0, "name": "H100", "utilization_pct": 70.0, "memory_used_mib": 1024.0,
             "memory_total_mib": 4096.0}]  # fmt: skip
    for n in range(3):
        store.heartbeat(cpu_only, stats={"cpu_pct": 10.0 * n, "memory_pct": 40.0})
        store.heartbeat(gpu_host, stats={"cpu_pct": 5.0, "memory_pct": 20.0, "gpus": gpus})
    page.goto(f"{live_ui.url}/workers")
    cpu_row, gpu_row = (f'tr[data-worker="{w}"]' for w in (cpu_only, gpu_host))
    page.wait_for_selector(f'{cpu_row} [data-metric="cpu"] .spark[data-points="3"] canvas')
    assert page.locator(f'{cpu_row} [data-metric="memory"] .spark[data-points="3"] canvas').count()
    assert page.locator(f'{cpu_row} [data-metric="gpus"] canvas').count() == 0  # no GPU
    page.wait_for_selector(f'{gpu_row} [data-metric="gpus"] .spark[data-points="3"] canvas')
    assert "70% · mem 25%" in page.locator(f'{gpu_row} [data-metric="gpus"]').inner_text()

    store.heartbeat(cpu_only, stats={"cpu_pct": 99.0, "memory_pct": 41.0})  # a new sample
    page.wait_for_selector(
        f'{cpu_row} [data-metric="cpu"] .spark[data-points="4"] canvas', timeout=3 * LIVE_MS
    )
    assert page.locator(f'{cpu_row} [data-metric="cpu"] .now').inner_text() == "99%"
    task = store.enqueue(store.create_task(Task(name="busy", project="browser")).id, "default")
    store.claim(["default"], cpu_only)
    page.wait_for_selector(f'{cpu_row} .running a[href="/tasks/{task.id}"]', timeout=3 * LIVE_MS)
    for worker in (cpu_only, gpu_host):
        store.unregister_worker(worker)


def test_plots_tab_draws_the_reported_figures_with_plotly(live_ui, store, page):
    from agent.sdk import plots

    task = store.create_task(Task(name="figures", project="browser"))
    figures = {
        "roc": plots.scatter_figure("roc", "val", [[0, 0], [0.2, 0.7], [1, 1]], "fpr", "tpr"),
        "confusion": plots.confusion_matrix_figure("confusion", "val", [[5, 1], [2, 7]]),
        "table": plots.table_figure("table", [["name", "score"], ["a", 1], ["b", 2]]),
        "surface": plots.surface_figure("surface", "loss", [[1, 2], [3, 4]]),
    }
    for title, figure in figures.items():
        store.report_plot(task.id, title, "val", 0, figure)
    page.goto(f"{live_ui.url}/tasks/{task.id}?tab=plots")
    page.wait_for_selector('[data-title="roc"] .plotly-figure[data-drawn="1"]')
    for title in figures:
        page.wait_for_selector(f'[data-title="{title}"] .plotly-figure[data-drawn="1"]')
    assert page.locator('[data-title="roc"] .main-svg .scatterlayer .trace').count() == 1
    assert page.locator('[data-title="roc"] .xtitle').text_content() == "fpr"  # a string title
    assert (
        page.locator(
            '[data-title="confusion"] .heatmaplayer image, [data-title="confusion"] .hm image'
        ).count()
        >= 1
    )
    assert "score" in page.locator('[data-title="table"] .plotly-figure').inner_text()
    assert page.locator('[data-title="surface"] canvas').count() >= 1  # WebGL scene
    scripts = page.evaluate("Array.from(document.scripts, (s) => s.src)")
    assert any(src.endswith("/vendor/plotly/plotly.min.js") for src in scripts)


def test_plotly_loads_only_where_there_is_a_figure(live_ui, store, page):
    task = store.create_task(Task(name="no-figures", project="browser"))
    page.goto(f"{live_ui.url}/tasks/{task.id}?tab=plots")
    page.wait_for_selector("text=No plots or images reported.")
    page.wait_for_load_state("load")
    assert page.evaluate("typeof window.Plotly") == "undefined"
    assert page.evaluate("typeof window.startPlots") == "function"  # the tab's script ran


def test_charts_follow_a_dark_colour_scheme(live_ui, store, browser):
    task = store.create_task(Task(name="dark", project="browser"))
    store.report_plot(task.id, "roc", "val", 0, {"data": [{"x": [0, 1], "y": [0, 1]}]})
    context = browser.new_context(color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(f"{live_ui.url}/tasks/{task.id}?tab=plots")
        page.wait_for_selector('.plotly-figure[data-drawn="1"] .xtick text')
        muted = page.evaluate(
            "getComputedStyle(document.documentElement).getPropertyValue('--muted').trim()"
        )
        assert muted == "#8d96a0"  # ui.css's dark --muted
        fill = page.locator(".plotly-figure .xtick text").first.evaluate("e => e.style.fill")
        assert fill == "rgb(141, 150, 160)"
    finally:
        context.close()
