from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("data", "0003_jobs_leases_and_releases"),
    ]

    operations = [
        migrations.AddField(
            model_name="dataset",
            name="subject_categories",
            field=models.TextField(
                blank=True,
                help_text="Whose data it is, e.g. loan applicants (GDPR Art. 30(1)(c)): for the register.",
            ),
        ),
        migrations.AddField(
            model_name="dataset",
            name="recipients",
            field=models.TextField(
                blank=True,
                help_text=(
                    "Who the data, or decisions made with it, are disclosed to (GDPR Art. 30(1)(d)): for the register."
                ),
            ),
        ),
        migrations.AddField(
            model_name="datasetversion",
            name="purged_at",
            field=models.DateTimeField(blank=True, null=True, help_text="When its rows were removed from storage."),
        ),
        migrations.AddField(
            model_name="datasetversion",
            name="purge_reason",
            field=models.CharField(blank=True, max_length=200, help_text='Why, e.g. "365-day retention".'),
        ),
    ]
