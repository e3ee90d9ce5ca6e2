from django.urls import path, re_path

from tom_education import views

app_name = 'tom_education'

urlpatterns = [
    path('pipelines/', views.ProcessListView.as_view(), name='process_list'),
    re_path(r'^pipeline/(?P<pk>\d+)/?$', views.ProcessDetailView.as_view(), name='process_detail'),
    path('pipeline/<int:pk>/log/', views.ProcessLogView.as_view(), name='process_log'),
    path('pipeline/<int:pk>/cancel/', views.ProcessCancelView.as_view(), name='process_cancel'),
    path('pipeline/<int:pk>/rerun/', views.ProcessRerunView.as_view(), name='process_rerun'),
    path('pipeline/target/<int:pk>/run/', views.TargetRunView.as_view(), name='target_run'),
    path('pipeline/target/<int:pk>/processes/', views.TargetProcessesView.as_view(), name='target_processes'),
]
