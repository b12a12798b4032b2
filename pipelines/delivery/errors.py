"""What a failed delivery raises. The engine turns it into the deliver step's StepError
(pipelines/runs/engine.py), so the delivery layer never speaks the steps' language."""


class DeliveryError(Exception):
    """A delivery that was not made; ``transient`` when asking again later may succeed."""

    def __init__(self, message: str, *, transient: bool = True):
        super().__init__(message)
        self.transient = transient
