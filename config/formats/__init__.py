"""Keel's date formats (FORMAT_MODULE_PATH): the admin's lists and forms and every
``|date`` without a format show a moment as the ``when`` filter does
(governance/templatetags/keel.py): local time with its zone."""
