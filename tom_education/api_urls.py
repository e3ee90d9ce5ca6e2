"""The app's API alone, as a URLconf: what the OpenAPI schema view describes."""
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tom_education import api

router = SimpleRouter()
router.register(r'pipelines', api.PipelineViewSet, 'pipelines')
router.register(r'pipelineprocesses', api.ProcessViewSet, 'pipelineprocesses')
router.register(r'pipelinerules', api.RuleViewSet, 'pipelinerules')

urlpatterns = [path('api/', include(router.urls))]
