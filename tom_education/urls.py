from django.urls import path, re_path

from tom_education import views

app_name = 'tom_education'

urlpatterns = [
    re_path(r'^pipeline/(?P<pk>\d+)/?$', views.ProcessDetailView.as_view(), name='process_detail'),
    path('pipeline/<int:pk>/log/', views.ProcessLogView.as_view(), name='process_log'),
]
