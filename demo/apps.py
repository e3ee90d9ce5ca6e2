from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = 'demo'
    verbose_name = 'tom_education demo TOM'
    default_auto_field = 'django.db.models.AutoField'
