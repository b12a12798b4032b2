# One way to show a moment across Keel: local time (TIME_ZONE, or the request's zone)
# with the zone's abbreviation, as the ``when`` filter writes it. Input formats stay Django's.
DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
