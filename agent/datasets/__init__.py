"""ClearML Data: versioned, content-addressed sets of files (``from agent import Dataset``).

A dataset version is a task of type ``data_processing`` whose ``state`` artifact lists
its files (path, sha256, size, blob URI); its runtime property ``dataset`` says its name,
version, parents and whether it is final. File contents are blobs
(:mod:`agent.files.blobs`) in the task's file storage, so a child version stores only
the files that changed, and a file held by many versions is stored once.
"""

from agent.datasets.dataset import Dataset

__all__ = ["Dataset"]
