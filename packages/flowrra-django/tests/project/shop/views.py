"""The shop's views: sync ones (served over WSGI) submit with ``task.delay()`` and wait with
``app.wait_for_result_sync()``; async ones (over ASGI) await ``submit`` and
``wait_for_result``."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from flowrra_django import delay_on_commit, get_app

from shop.models import Note, Order
from shop.tasks import backend_pid, backend_pid_async, confirm, record_note, ship

app = get_app()


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    order = Order.objects.create(item=request.POST["item"])
    task_id = ship.delay(order.pk)  # queued: returns the task id
    return JsonResponse({"order": order.pk, "task": task_id})


def order(request: HttpRequest, order_id: int) -> JsonResponse:
    found = Order.objects.get(pk=order_id)
    return JsonResponse({"order": found.pk, "status": found.status})


@csrf_exempt
@require_POST
def ship_now(request: HttpRequest, order_id: int) -> JsonResponse:
    task_id = ship.with_options(priority=-1).delay(order_id)
    result = app.wait_for_result_sync(task_id, timeout=10)  # blocks this thread
    return JsonResponse({"status": result.status.value, "result": result.result})


def task_status(request: HttpRequest, task_id: str) -> JsonResponse:
    result = app.get_result_sync(task_id)  # never waits
    if result is None:
        return JsonResponse({"status": "unknown"}, status=404)
    return JsonResponse({"status": result.status.value, "result": result.result})


@csrf_exempt
def notes(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        text = request.POST["text"]
        try:
            with transaction.atomic():
                Order.objects.create(item=text)
                delay_on_commit(record_note, text)  # queued once the order is committed
                if request.POST.get("fail"):
                    raise ValueError("payment declined")  # rolls back: nothing is queued
        except ValueError:
            return JsonResponse({"queued": False})
        return JsonResponse({"queued": True})
    return JsonResponse({"notes": sorted(Note.objects.values_list("text", flat=True))})


@csrf_exempt
@require_POST
def db_pid(request: HttpRequest) -> JsonResponse:
    task_id = backend_pid.delay()
    return JsonResponse({"pid": app.wait_for_result_sync(task_id, timeout=10).result})


@csrf_exempt
@require_POST
async def create_order_async(request: HttpRequest) -> JsonResponse:
    order = await Order.objects.acreate(item=request.POST["item"])
    task_id = await confirm.submit(order.pk)
    result = await app.wait_for_result(task_id, timeout=10)
    return JsonResponse({"order": order.pk, "task": task_id, "result": result.result})


@csrf_exempt
@require_POST
async def db_pid_async(request: HttpRequest) -> JsonResponse:
    task_id = await backend_pid_async.submit()
    result = await app.wait_for_result(task_id, timeout=10)
    return JsonResponse({"pid": result.result})
