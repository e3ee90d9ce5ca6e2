from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView
from tom_common.api_router import SharedAPIRootRouter

from tom_education import api, views

app_name = 'tom_education'

urlpatterns = [
    path('pipelines/', views.ProcessListView.as_view(), name='process_list'),
    re_path(r'^pipeline/(?P<pk>\d+)/?$', views.ProcessDetailView.as_view(), name='process_detail'),
    path('pipeline/<int:pk>/log/', views.ProcessLogView.as_view(), name='process_log'),
    path('pipeline/<int:pk>/log.txt', views.ProcessLogDownloadView.as_view(), name='process_log_download'),
    path('pipeline/<int:pk>/outputs/<str:product_pk>/', views.ProcessOutputView.as_view(), name='process_output'),
    path('pipeline/<int:pk>/cancel/', views.ProcessCancelView.as_view(), name='process_cancel'),
    path('pipeline/<int:pk>/rerun/', views.ProcessRerunView.as_view(), name='process_rerun'),
    path('pipeline/target/<int:pk>/run/', views.TargetRunView.as_view(), name='target_run'),
    path('pipeline/target/<int:pk>/processes/', views.TargetProcessesView.as_view(), name='target_processes'),
    path('pipeline/target/<int:pk>/rules/new/', views.TargetRuleCreateView.as_view(), name='rule_create'),
    path('pipeline/rule/<int:pk>/', views.RuleDetailView.as_view(), name='rule_detail'),
    path('pipeline/rule/<int:pk>/pause/', views.RulePauseView.as_view(), name='rule_pause'),
    path('pipeline/rule/<int:pk>/delete/', views.RuleDeleteView.as_view(), name='rule_delete'),
    # the OpenAPI schema of this app's endpoints only (tom_base's own API is not described by it)
    path('api/pipeline-schema/', SpectacularAPIView.as_view(urlconf='tom_education.api_urls'), name='api_schema'),
]

# REST API: registered on tom_base's shared router, which serves it under /api/ of the TOM
router = SharedAPIRootRouter()
router.register(r'pipelines', api.PipelineViewSet, 'pipelines')
router.register(r'pipelineprocesses', api.ProcessViewSet, 'pipelineprocesses')
router.register(r'pipelinerules', api.RuleViewSet, 'pipelinerules')
