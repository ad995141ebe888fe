"""The kopf operator for TableReplicationPair: `ddbbridge operator` or `python -m ddbbridge.kopf_app`.

settings.py holds every kopf setting and name; handlers.py is thin glue; lifecycle.py runs the passes
over the reconcile core; status.py and ddbbridge.conditions derive the status.
"""
