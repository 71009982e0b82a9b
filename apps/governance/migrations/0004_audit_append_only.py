from django.db import migrations

FUNCTION = "governance_audit_append_only"
TRIGGER = "governance_auditevent_append_only"

# Why a row trigger for UPDATE and DELETE, and no trigger for TRUNCATE:
#
# - The row trigger refuses every UPDATE and DELETE of an audit event, whoever runs it: an ORM bug, a
#   shell, the admin, a role granted too much. It has no switch a session could turn on (a custom setting
#   such as faro.audit_maintenance would be one SET away for the application's role too), so only a role
#   that may ALTER the table (its owner, a superuser) gets past it, by disabling or dropping the trigger.
# - TRUNCATE is not refused by a trigger, because Django's flush (manage.py flush, and pytest-django between
#   transactional tests) empties every table with one TRUNCATE statement on PostgreSQL: a TRUNCATE trigger
#   would break it, and an escape hatch for it would again be a setting anyone can SET. TRUNCATE, like UPDATE
#   and DELETE, is kept from the application by privileges instead: it runs as a role that does not own the
#   tables and holds only SELECT, INSERT on the audit table (README, Operations).
# - Against the owner, nothing inside the database helps; the anchors outside it (audit_anchor) show a chain
#   rewritten after it was anchored.
#
# The SQL is PostgreSQL's; on SQLite (the embedded default) the migration does nothing.
CREATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % of an event in %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit events are only ever inserted (apps.governance.services.audit_record).';
END;
$$
"""
CREATE_TRIGGER = (
    "CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"
)
DROP_TRIGGER = "DROP TRIGGER IF EXISTS {trigger} ON {table}"
DROP_FUNCTION = f"DROP FUNCTION IF EXISTS {FUNCTION}()"


def _table(apps, schema_editor) -> str:
    return schema_editor.quote_name(apps.get_model("governance", "AuditEvent")._meta.db_table)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # params=None: the statements hold % signs (RAISE's placeholders) that are not query parameters.
    schema_editor.execute(CREATE_FUNCTION, params=None)
    schema_editor.execute(
        CREATE_TRIGGER.format(trigger=TRIGGER, table=_table(apps, schema_editor), function=FUNCTION), params=None
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(DROP_TRIGGER.format(trigger=TRIGGER, table=_table(apps, schema_editor)), params=None)
    schema_editor.execute(DROP_FUNCTION, params=None)


class Migration(migrations.Migration):
    """On PostgreSQL, audit events can be inserted and never updated or deleted (see the comment above)."""

    dependencies = [("governance", "0003_serving")]
    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
