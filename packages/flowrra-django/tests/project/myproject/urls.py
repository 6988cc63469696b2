from django.apps import apps
from django.urls import include, path

from shop import views

urlpatterns = [
    path("orders/", views.create_order),
    path("orders/<int:order_id>/", views.order),
    path("orders/<int:order_id>/ship-now/", views.ship_now),
    path("tasks/<str:task_id>/", views.task_status),
    path("notes/", views.notes),
    path("db-pid/", views.db_pid),
    path("async/orders/", views.create_order_async),
    path("async/db-pid/", views.db_pid_async),
]

if apps.is_installed("reports"):
    urlpatterns += [path("reports/", include("reports.urls"))]
