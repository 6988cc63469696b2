"""Django tasks (``django.tasks``, Django 6.0+) for the FlowrraBackend tests."""

from django.tasks import task

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


def plain(context: object = None) -> None:
    """Not a task: the tests decorate it with options FlowrraBackend refuses."""
