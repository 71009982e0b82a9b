from django.db import migrations


def create_head(apps, schema_editor):
    apps.get_model("governance", "AuditHead").objects.get_or_create(id=1)


class Migration(migrations.Migration):
    """The chain's head row exists from the start, so the first appends only ever lock it."""

    dependencies = [("governance", "0001_initial")]
    operations = [migrations.RunPython(create_head, migrations.RunPython.noop)]
