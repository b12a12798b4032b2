"""History, field-by-field diff between any two versions, and revert with a
reason, for every history-tracked model in the admin."""


class HistoryAdminMixin:
    pass
