from django.urls import path

from reports import views

urlpatterns = [
    path("count/", views.enqueue_count),
    path("summary/", views.enqueue_summary),
    path("fail/", views.enqueue_failure),
    path("<str:result_id>/", views.report),
]
