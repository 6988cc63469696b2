"""Django's own Tasks (Django 6.0+), run by Flowrra through FlowrraBackend."""

from django.tasks import task

from shop.models import Order


@task()
def count_orders(status: str) -> int:
    return Order.objects.filter(status=status).count()


@task(priority=10)
async def summarize(items: list[str]) -> dict[str, int]:
    return {"items": len(items), "letters": sum(len(item) for item in items)}


@task()
def fail(message: str) -> None:
    raise LookupError(message)
