"""Django Tasks from views: ``enqueue`` in sync views, ``aenqueue`` in async ones, and
results read back with ``get_result``/``refresh()``."""

from datetime import timedelta

from django.http import HttpRequest, JsonResponse
from django.tasks import TaskResultStatus, default_task_backend
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from reports.tasks import count_orders, fail, summarize


@csrf_exempt
@require_POST
def enqueue_count(request: HttpRequest) -> JsonResponse:
    delay = float(request.POST.get("delay", 0))
    task = count_orders.using(run_after=timezone.now() + timedelta(seconds=delay))
    result = task.enqueue(request.POST["status"])
    return JsonResponse({"id": result.id, "status": result.status})


@csrf_exempt
@require_POST
async def enqueue_summary(request: HttpRequest) -> JsonResponse:
    result = await summarize.aenqueue(request.POST.getlist("item"))
    return JsonResponse({"id": result.id, "status": result.status})


@csrf_exempt
@require_POST
def enqueue_failure(request: HttpRequest) -> JsonResponse:
    result = fail.enqueue(request.POST["message"])
    return JsonResponse({"id": result.id, "status": result.status})


def report(request: HttpRequest, result_id: str) -> JsonResponse:
    result = default_task_backend.get_result(result_id)
    body = {"status": result.status, "task": result.task.module_path}
    if result.status == TaskResultStatus.SUCCESSFUL:
        body["return_value"] = result.return_value
    if result.errors:
        body["error"] = result.errors[0].exception_class_path
    return JsonResponse(body)
