from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """A console page for rows that only services write: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
