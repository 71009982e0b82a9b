from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0004_jobs_leases_and_releases"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="modelversion",
            options={
                "ordering": ["registered_model", "-version"],
                "permissions": [("approve_modelversion", "Can approve or reject model versions")],
            },
        ),
    ]
