"""The shop's tasks: found by autodiscovery (an installed app's tasks.py)."""

from asgiref.sync import sync_to_async
from django.db import connection
from flowrra_django import get_app

from shop.models import Note, Order

app = get_app()


@app.task()
def ship(order_id: int) -> str:
    # A plain def: runs in a worker thread, so it may use the ORM as a view does.
    order = Order.objects.get(pk=order_id)
    order.status = "shipped"
    order.save(update_fields=["status"])
    return order.status


@app.task()
async def confirm(order_id: int) -> str:
    # An async def: runs on the worker's event loop; the ORM through its async methods.
    order = await Order.objects.aget(pk=order_id)
    order.status = "confirmed"
    await order.asave(update_fields=["status"])
    return order.status


@app.task()
def record_note(text: str) -> int:
    return Note.objects.create(text=text).pk


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid: int = cursor.fetchone()[0]
    return pid


@app.task()
def backend_pid() -> int:
    """The PostgreSQL backend serving this worker thread's connection."""
    return _backend_pid()


@app.task()
async def backend_pid_async() -> int:
    """The PostgreSQL backend serving the connection async tasks' ORM calls use."""
    return await sync_to_async(_backend_pid)()
