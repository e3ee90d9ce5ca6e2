# Automatic-run rules: a target list (group) as scope, and matching on a FITS header keyword.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tom_education', '0006_automatic_runs'),
        ('tom_targets', '0031_basetarget_shared_by_basetarget_shared_from'),
    ]

    operations = [
        migrations.AddField(
            model_name='pipelinerule',
            name='header_keyword',
            field=models.CharField(blank=True, default='', help_text='Match only FITS files whose header has this keyword (e.g. FILTER)', max_length=70),
        ),
        migrations.AddField(
            model_name='pipelinerule',
            name='header_value',
            field=models.CharField(blank=True, default='', help_text='... with this value (case and spaces ignored; empty: any value)', max_length=70),
        ),
        migrations.AddField(
            model_name='pipelinerule',
            name='target_list',
            field=models.ForeignKey(blank=True, help_text='Only the targets of this group', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='pipeline_rules', to='tom_targets.targetlist', verbose_name='target list (group)'),
        ),
        migrations.AlterField(
            model_name='pipelinerule',
            name='target',
            field=models.ForeignKey(blank=True, help_text='Only this target (empty, no target list: every target the owner may view)', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='pipeline_rules', to='tom_targets.basetarget'),
        ),
    ]
