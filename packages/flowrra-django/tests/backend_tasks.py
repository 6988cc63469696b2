"""Django tasks (``django.tasks``, Django 6.0+) for the FlowrraBackend tests."""

from django.tasks import TaskContext, task

#: What :func:`remember` ran, in order.
ran: list[str] = []


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
async def echo(value: object) -> object:
    return value


@task()
def remember(label: str) -> str:
    ran.append(label)
    return label


@task()
def fail(message: str) -> None:
    raise LookupError(message)


@task(takes_context=True)
def whoami(context: TaskContext, label: str) -> dict[str, object]:
    result = context.task_result
    return {"id": result.id, "attempt": context.attempt, "label": label, "args": result.args}


@task(takes_context=True)
async def awhoami(context: TaskContext) -> dict[str, object]:
    return {"id": context.task_result.id, "status": str(context.task_result.status)}


def plain(context: object = None) -> None:
    """Not a task: the tests decorate it with options FlowrraBackend refuses."""
