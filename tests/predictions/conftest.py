from apps.predictions.models import PredictionRecord


def refusing(send):
    """Wrap `send(body, **kwargs)` into `call(status, body, **kwargs)`: the request must be refused with
    `status` and log nothing; returns the JSON error body."""

    def call(status: int, body=None, **kwargs):
        before = PredictionRecord.objects.count()
        response = send(body, **kwargs)
        assert response.status_code == status, response.content
        assert PredictionRecord.objects.count() == before
        return response.json()

    return call
