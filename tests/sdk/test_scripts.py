"""Real scripts calling ``Task.init``: exit statuses, output capture, attaching under an agent."""

from __future__ import annotations

import json

from agent import Task


def _only_task(backend, name: str):
    (task,) = backend.query_tasks(name=name)
    return backend.get_task(task.id)


def test_clean_exit_completes_and_captures_output(run_script, backend):
    result = run_script(
        """
        import sys
        from agent import Task
        task = Task.init(project_name="scripts", task_name="ok")
        for i in range(3):
            print("line", i)
        print("progress 10%\\rprogress 100%")
        print("oops", file=sys.stderr)
        task.get_logger().report_text("from logger")
        task.get_logger().report_scalar("loss", "train", 0.5, 1)
        print("no newline at the end", end="")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "line 2" in result.stdout and "from logger" in result.stdout
    record = _only_task(backend, "ok")
    assert (record.project, record.status) == ("scripts", "completed")
    # outside git the script's own code travels, so that an agent can run a clone
    assert record.script.entry_point == "script.py" and record.script.working_dir == "."
    assert 'task = Task.init(project_name="scripts", task_name="ok")' in record.script.code
    lines = [(line.level, line.text) for line in backend.get_logs(record.id)]
    assert [text for _, text in lines].count("from logger") == 1  # logged once, not re-captured
    assert ("info", "line 0") in lines and ("info", "progress 100%") in lines
    assert ("error", "oops") in lines and ("info", "no newline at the end") in lines
    assert backend.get_scalars(record.id) == {"loss": {"train": [(1, 0.5)]}}


def test_uncaught_exception_marks_failed_with_traceback(run_script, backend):
    result = run_script(
        """
        from agent import Task
        Task.init(project_name="scripts", task_name="boom")
        print("before")
        raise RuntimeError("it broke")
        """
    )
    assert result.returncode == 1 and "RuntimeError: it broke" in result.stderr
    record = _only_task(backend, "boom")
    assert record.status == "failed"
    assert record.status_message == "uncaught RuntimeError: it broke"
    log = "\n".join(line.text for line in backend.get_logs(record.id))
    assert "before" in log and "Traceback" in log and "RuntimeError: it broke" in log


def test_nonzero_sys_exit_marks_failed(run_script, backend):
    result = run_script(
        """
        import sys
        from agent import Task
        Task.init(project_name="scripts", task_name="exit3")
        sys.exit(3)
        """
    )
    assert result.returncode == 3
    record = _only_task(backend, "exit3")
    assert (record.status, record.status_message) == ("failed", "exited with code 3")


def test_zero_sys_exit_completes(run_script, backend):
    result = run_script(
        """
        import sys
        from agent import Task
        Task.init(project_name="scripts", task_name="exit0")
        sys.exit(0)
        """
    )
    assert result.returncode == 0
    assert _only_task(backend, "exit0").status == "completed"


def test_keyboard_interrupt_marks_stopped(run_script, backend):
    run_script(
        """
        from agent import Task
        Task.init(project_name="scripts", task_name="ctrl-c")
        raise KeyboardInterrupt
        """
    )
    assert _only_task(backend, "ctrl-c").status == "stopped"


def test_under_agent_attaches_and_stored_values_win(run_script, backend):
    task = Task.create(project_name="scripts", task_name="remote")
    task.set_parameters({"General": {"lr": "0.5", "epochs": "7", "shuffle": "false"}})
    task.set_configuration_object("General", config_dict={"depth": 9})
    task.mark_started()  # as the agent's claim does
    result = run_script(
        """
        import json
        from agent import Task
        task = Task.init(project_name="ignored", task_name="ignored")
        params = task.connect({"lr": 0.1, "epochs": 1, "shuffle": True, "new": "x"})
        config = task.connect_configuration({"depth": 3})
        print(json.dumps({"id": task.id, "params": params, "config": config,
                          "same": Task.current_task() is task}))
        task.upload_artifact("result", {"ok": True})
        task.get_logger().report_scalar("acc", "val", 0.75, 0)
        """,
        AGENT_TASK_ID=task.id,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {
        "id": task.id,
        "params": {"lr": 0.5, "epochs": 7, "shuffle": False, "new": "x"},
        "config": {"depth": 9},
        "same": True,
    }
    record = backend.get_task(task.id)
    assert record.status == "in_progress"  # the agent decides the final status
    assert (record.project, record.name) == ("scripts", "remote")
    assert record.hyperparams["General"]["new"] == "x"
    assert backend.get_logs(task.id) == []  # the agent streams output, not the SDK
    assert backend.get_scalars(task.id) == {"acc": {"val": [(0, 0.75)]}}
    assert Task.get_task(task.id).artifacts["result"].get() == {"ok": True}


def test_under_agent_current_task_attaches_without_init(run_script, backend):
    task = Task.create(project_name="scripts", task_name="step")
    result = run_script(
        """
        from agent import Logger, Task
        print(Task.current_task().id)
        Logger.current_logger().report_scalar("s", "x", 1.0, 3)
        """,
        AGENT_TASK_ID=task.id,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == task.id
    assert backend.get_scalars(task.id) == {"s": {"x": [(3, 1.0)]}}


def test_unknown_agent_task_id_is_a_clear_error(run_script):
    result = run_script(
        """
        from agent import Task
        Task.init()
        """,
        AGENT_TASK_ID="f" * 32,
    )
    assert result.returncode == 1
    assert f"AGENT_TASK_ID={'f' * 32} names no task" in result.stderr


def test_a_forked_child_leaves_the_parents_task_alone(run_script, backend):
    result = run_script(
        """
        import os, sys
        from agent import Task
        task = Task.init(project_name="scripts", task_name="fork", capture_output=False)
        task.get_logger().report_scalar("s", "parent", 1.0, 0)  # still buffered at the fork
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # runs the child's atexit hooks
        os.waitpid(pid, 0)
        print(task.get_status())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "in_progress"
    record = _only_task(backend, "fork")
    assert record.status == "completed"
    assert backend.get_scalars(record.id) == {"s": {"parent": [(0, 1.0)]}}
