"""SqlBackend's SQLite statements and schema, compiled by SQLAlchemy ahead of time.

Generated from agent/store/statements.py and schema.py: do not edit. After changing
either, run ``python -m agent.store.statements`` (a test checks this file is current).
See ``agent.store.statements.sqlite_catalog`` for what each entry holds.
"""

# fmt: off
DDL = [
    'CREATE TABLE IF NOT EXISTS projects (\n\tname VARCHAR(255) NOT NULL, \n\tcreated FLOAT NOT NULL, \n\tPRIMARY KEY (name)\n)',
    'CREATE TABLE IF NOT EXISTS queues (\n\tid VARCHAR(64) NOT NULL, \n\tname VARCHAR(255) NOT NULL, \n\tcreated FLOAT NOT NULL, \n\tPRIMARY KEY (id), \n\tUNIQUE (name)\n)',
    'CREATE TABLE IF NOT EXISTS tasks (\n\tid VARCHAR(64) NOT NULL, \n\tname VARCHAR(255) NOT NULL, \n\tproject VARCHAR(255) NOT NULL, \n\ttype VARCHAR(32) NOT NULL, \n\tstatus VARCHAR(32) NOT NULL, \n\tparent VARCHAR(64), \n\ttags JSON NOT NULL, \n\tcomment TEXT NOT NULL, \n\tscript JSON NOT NULL, \n\thyperparams JSON NOT NULL, \n\tconfiguration JSON NOT NULL, \n\tcontainer JSON NOT NULL, \n\truntime JSON NOT NULL, \n\tcreated FLOAT NOT NULL, \n\tstarted FLOAT, \n\tcompleted FLOAT, \n\tlast_update FLOAT NOT NULL, \n\tworker VARCHAR(255), \n\tqueue VARCHAR(255), \n\tstatus_message TEXT NOT NULL, \n\toutput_uri TEXT, \n\tlease_expires FLOAT, \n\tPRIMARY KEY (id)\n)',
    'CREATE INDEX IF NOT EXISTS ix_tasks_parent ON tasks (parent)',
    'CREATE INDEX IF NOT EXISTS ix_tasks_project_name ON tasks (project, name)',
    'CREATE INDEX IF NOT EXISTS ix_tasks_status ON tasks (status)',
    'CREATE INDEX IF NOT EXISTS ix_tasks_worker ON tasks (worker)',
    'CREATE TABLE IF NOT EXISTS workers (\n\tid VARCHAR(255) NOT NULL, \n\tname VARCHAR(255) NOT NULL, \n\tqueues JSON NOT NULL, \n\tlast_heartbeat FLOAT NOT NULL, \n\tregistered FLOAT NOT NULL, \n\tstats JSON NOT NULL, \n\tPRIMARY KEY (id)\n)',
    'CREATE TABLE IF NOT EXISTS artifacts (\n\ttask_id VARCHAR(64) NOT NULL, \n\tname VARCHAR(255) NOT NULL, \n\turi TEXT NOT NULL, \n\tsha256 VARCHAR(64) NOT NULL, \n\tsize BIGINT NOT NULL, \n\ttype VARCHAR(64) NOT NULL, \n\tpreview TEXT NOT NULL, \n\tmetadata JSON NOT NULL, \n\tcreated FLOAT NOT NULL, \n\tPRIMARY KEY (task_id, name), \n\tFOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE\n)',
    'CREATE INDEX IF NOT EXISTS ix_artifacts_sha ON artifacts (sha256)',
    'CREATE TABLE IF NOT EXISTS logs (\n\ttask_id VARCHAR(64) NOT NULL, \n\tseq INTEGER NOT NULL, \n\tts FLOAT NOT NULL, \n\tlevel VARCHAR(16) NOT NULL, \n\ttext TEXT NOT NULL, \n\tPRIMARY KEY (task_id, seq), \n\tFOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE\n)',
    'CREATE TABLE IF NOT EXISTS plots (\n\ttask_id VARCHAR(64) NOT NULL, \n\ttitle VARCHAR(255) NOT NULL, \n\tseries VARCHAR(255) NOT NULL, \n\titeration INTEGER NOT NULL, \n\tfigure JSON NOT NULL, \n\treported FLOAT NOT NULL, \n\tPRIMARY KEY (task_id, title, series, iteration), \n\tFOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE\n)',
    'CREATE TABLE IF NOT EXISTS queue_entries (\n\tid INTEGER NOT NULL, \n\tqueue_id VARCHAR(64) NOT NULL, \n\ttask_id VARCHAR(64) NOT NULL, \n\tpriority INTEGER NOT NULL, \n\tenqueued FLOAT NOT NULL, \n\tPRIMARY KEY (id), \n\tFOREIGN KEY(queue_id) REFERENCES queues (id) ON DELETE CASCADE, \n\tUNIQUE (task_id), \n\tFOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE\n)',
    'CREATE INDEX IF NOT EXISTS ix_queue_entries_order ON queue_entries (queue_id, priority, id)',
    'CREATE TABLE IF NOT EXISTS scalars (\n\ttask_id VARCHAR(64) NOT NULL, \n\ttitle VARCHAR(255) NOT NULL, \n\tseries VARCHAR(255) NOT NULL, \n\titeration INTEGER NOT NULL, \n\tvalue FLOAT NOT NULL, \n\tFOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE\n)',
    'CREATE INDEX IF NOT EXISTS ix_scalars_task ON scalars (task_id, title, series, iteration)',
    'CREATE TABLE IF NOT EXISTS task_props (\n\ttask_id VARCHAR(64) NOT NULL, \n\t"key" VARCHAR(255) NOT NULL, \n\tvalue TEXT NOT NULL, \n\tPRIMARY KEY (task_id, "key"), \n\tFOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE\n)',
    'CREATE INDEX IF NOT EXISTS ix_task_props_kv ON task_props ("key", value)',
    'CREATE TABLE IF NOT EXISTS task_tags (\n\ttask_id VARCHAR(64) NOT NULL, \n\ttag VARCHAR(255) NOT NULL, \n\tPRIMARY KEY (task_id, tag), \n\tFOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE\n)',
    'CREATE INDEX IF NOT EXISTS ix_task_tags_tag ON task_tags (tag)',
]

STATEMENTS = {
    'ANY_ENTRY': ('SELECT queue_entries.id \nFROM queue_entries JOIN queues ON queues.id = queue_entries.queue_id \nWHERE queues.name IN (__[POSTCOMPILE_queues])\n LIMIT ? OFFSET ?', ('queues', 'param_1', 'param_2'), {'param_1': 1, 'param_2': 0}, (), (), ('queues',)),
    'ARTIFACTS': ('SELECT artifacts.task_id, artifacts.name, artifacts.uri, artifacts.sha256, artifacts.size, artifacts.type, artifacts.preview, artifacts.metadata, artifacts.created \nFROM artifacts \nWHERE artifacts.task_id = ? ORDER BY artifacts.created', ('task_id',), {}, (), ('metadata',), ()),
    'CLAIM_TASK': ('UPDATE tasks SET status=?, started=?, completed=?, last_update=?, worker=?, status_message=?, lease_expires=? WHERE tasks.id = ? RETURNING id, name, project, type, status, parent, tags, comment, script, hyperparams, configuration, container, runtime, created, started, completed, last_update, worker, queue, status_message, output_uri, lease_expires', ('status', 'started', 'completed', 'last_update', 'worker', 'status_message', 'lease_expires', 'task_id'), {}, (), ('configuration', 'container', 'hyperparams', 'runtime', 'script', 'tags'), ()),
    'DELETE_ARTIFACT': ('DELETE FROM artifacts WHERE artifacts.task_id = ? AND artifacts.name = ?', ('task_id', 'name'), {}, (), (), ()),
    'DELETE_ENTRY_OF_TASK': ('DELETE FROM queue_entries WHERE queue_entries.task_id = ?', ('task_id',), {}, (), (), ()),
    'DELETE_PROPS_OF_TASK': ('DELETE FROM task_props WHERE task_props.task_id = ?', ('task_id',), {}, (), (), ()),
    'DELETE_TAGS_OF_TASK': ('DELETE FROM task_tags WHERE task_tags.task_id = ?', ('task_id',), {}, (), (), ()),
    'INSERT_ARTIFACT': ('INSERT INTO artifacts (task_id, name, uri, sha256, size, type, preview, metadata, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', ('task_id', 'name', 'uri', 'sha256', 'size', 'type', 'preview', 'metadata', 'created'), {}, ('metadata',), (), ()),
    'INSERT_ENTRY': ('INSERT INTO queue_entries (queue_id, task_id, priority, enqueued) VALUES (?, ?, ?, ?)', ('queue_id', 'task_id', 'priority', 'enqueued'), {}, (), (), ()),
    'INSERT_LOG': ('INSERT INTO logs (task_id, seq, ts, level, text) VALUES (?, ?, ?, ?, ?)', ('task_id', 'seq', 'ts', 'level', 'text'), {}, (), (), ()),
    'INSERT_PROJECT': ('INSERT INTO projects (name, created) VALUES (?, ?) ON CONFLICT (name) DO NOTHING', ('name', 'created'), {}, (), (), ()),
    'INSERT_PROPS': ('INSERT INTO task_props (task_id, "key", value) VALUES (?, ?, ?)', ('task_id', 'key', 'value'), {}, (), (), ()),
    'INSERT_QUEUE': ('INSERT INTO queues (id, name, created) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING', ('id', 'name', 'created'), {}, (), (), ()),
    'INSERT_SCALAR': ('INSERT INTO scalars (task_id, title, series, iteration, value) VALUES (?, ?, ?, ?, ?)', ('task_id', 'title', 'series', 'iteration', 'value'), {}, (), (), ()),
    'INSERT_TAGS': ('INSERT INTO task_tags (task_id, tag) VALUES (?, ?)', ('task_id', 'tag'), {}, (), (), ()),
    'INSERT_TASK': ('INSERT INTO tasks (id, name, project, type, status, parent, tags, comment, script, hyperparams, configuration, container, runtime, created, started, completed, last_update, worker, queue, status_message, output_uri, lease_expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', ('id', 'name', 'project', 'type', 'status', 'parent', 'tags', 'comment', 'script', 'hyperparams', 'configuration', 'container', 'runtime', 'created', 'started', 'completed', 'last_update', 'worker', 'queue', 'status_message', 'output_uri', 'lease_expires'), {}, ('configuration', 'container', 'hyperparams', 'runtime', 'script', 'tags'), (), ()),
    'LAST_LOG_SEQ': ('SELECT max(logs.seq) AS max_1 \nFROM logs \nWHERE logs.task_id = ?', ('task_id',), {}, (), (), ()),
    'QUEUE_ID': ('SELECT queues.id \nFROM queues \nWHERE queues.name = ?', ('name',), {}, (), (), ()),
    'TAKE_HEAD': ('DELETE FROM queue_entries WHERE queue_entries.id = (SELECT queue_entries.id \nFROM queue_entries \nWHERE queue_entries.queue_id = (SELECT queues.id \nFROM queues \nWHERE queues.name = ?) AND queue_entries.priority = (SELECT max(top.priority) AS max_1 \nFROM queue_entries AS top \nWHERE top.queue_id = (SELECT queues.id \nFROM queues \nWHERE queues.name = ?)) ORDER BY queue_entries.id\n LIMIT ? OFFSET ?) RETURNING task_id', ('queue', 'queue', 'param_1', 'param_2'), {'param_1': 1, 'param_2': 0}, (), (), ()),
    'TASK': ('SELECT tasks.id, tasks.name, tasks.project, tasks.type, tasks.status, tasks.parent, tasks.tags, tasks.comment, tasks.script, tasks.hyperparams, tasks.configuration, tasks.container, tasks.runtime, tasks.created, tasks.started, tasks.completed, tasks.last_update, tasks.worker, tasks.queue, tasks.status_message, tasks.output_uri, tasks.lease_expires \nFROM tasks \nWHERE tasks.id = ?', ('task_id',), {}, (), ('configuration', 'container', 'hyperparams', 'runtime', 'script', 'tags'), ()),
    'TASK_EXISTS': ('SELECT tasks.id \nFROM tasks \nWHERE tasks.id = ?', ('task_id',), {}, (), (), ()),
    'TASK_FOR_UPDATE': ('SELECT tasks.id, tasks.name, tasks.project, tasks.type, tasks.status, tasks.parent, tasks.tags, tasks.comment, tasks.script, tasks.hyperparams, tasks.configuration, tasks.container, tasks.runtime, tasks.created, tasks.started, tasks.completed, tasks.last_update, tasks.worker, tasks.queue, tasks.status_message, tasks.output_uri, tasks.lease_expires \nFROM tasks \nWHERE tasks.id = ?', ('task_id',), {}, (), ('configuration', 'container', 'hyperparams', 'runtime', 'script', 'tags'), ()),
    'TOUCH_TASK': ('UPDATE tasks SET last_update=? WHERE tasks.id = ?', ('last_update', 'task_id'), {}, (), (), ()),
    'UPDATE_TASK': ('UPDATE tasks SET name=?, project=?, type=?, status=?, parent=?, tags=?, comment=?, script=?, hyperparams=?, configuration=?, container=?, runtime=?, created=?, started=?, completed=?, last_update=?, worker=?, queue=?, status_message=?, output_uri=?, lease_expires=? WHERE tasks.id = ?', ('name', 'project', 'type', 'status', 'parent', 'tags', 'comment', 'script', 'hyperparams', 'configuration', 'container', 'runtime', 'created', 'started', 'completed', 'last_update', 'worker', 'queue', 'status_message', 'output_uri', 'lease_expires', 'task_id'), {}, ('configuration', 'container', 'hyperparams', 'runtime', 'script', 'tags'), (), ()),
}
