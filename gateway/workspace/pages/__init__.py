"""The workspace's page modules, one concern each; each has ``routes = web.RouteTableDef()``
and is listed in ``gateway.workspace.PAGES``."""
