"""Object-permission management pages (guardian's), allowed only to governance
leads who may change the object and to superusers; nobody grants themselves."""


class ObjectPermissionsAdminMixin:
    pass
