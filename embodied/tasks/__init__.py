"""Task specs: loading, validation, views and rules."""

from embodied.tasks.spec import StageSpec, TaskError, TaskSpec, ViewSpec, list_tasks, load_task, tasks_dir

__all__ = ["StageSpec", "TaskError", "TaskSpec", "ViewSpec", "list_tasks", "load_task", "tasks_dir"]
