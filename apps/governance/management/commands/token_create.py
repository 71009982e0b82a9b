from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import FaroError
from apps.governance.models import ApiToken
from apps.governance.services import token_create


class Command(BaseCommand):
    help = "Create an API token for a client and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The client's name.")
        parser.add_argument(
            "--scopes", default="predict,read", help=f"Comma-separated: {', '.join(ApiToken.Scope.values)}."
        )

    def handle(self, *args, name: str, scopes: str, **options):
        wanted = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        try:
            token, plaintext = token_create(name=name, scopes=wanted)
        except FaroError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(f"Token for {token.name} with scopes {', '.join(token.scopes)} (shown once):")
        self.stdout.write(plaintext)
