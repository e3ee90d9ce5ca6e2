"""The demo / development TOM that ships with tom_education (``manage.py`` uses its settings)."""
