# Every run's claim and end rewrite its row: keep only the indexes queries use (see PipelineProcess.Meta).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tom_education', '0007_rule_scope_and_header'),
    ]

    operations = [
        migrations.AlterField(
            model_name='pipelineprocess',
            name='identifier',
            field=models.CharField(max_length=150),
        ),
        migrations.AlterField(
            model_name='pipelineprocess',
            name='pipeline',
            field=models.CharField(help_text='Name the pipeline is registered under', max_length=100),
        ),
        migrations.AlterField(
            model_name='pipelineprocess',
            name='state',
            field=models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('created', 'Finished'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='pending', max_length=20),
        ),
        migrations.AddIndex(
            model_name='pipelineprocess',
            index=models.Index(fields=['pipeline'], name='tom_education_pipeline'),
        ),
        migrations.AddConstraint(
            model_name='pipelineprocess',
            constraint=models.UniqueConstraint(fields=('identifier',), name='tom_education_unique_identifier'),
        ),
    ]
