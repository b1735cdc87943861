"""HTTP handlers: parse → authorise → call a service or storage → render.

One module per endpoint group; the route table in :mod:`dendrite_admin_ext.routes` says
which handler serves which path.
"""
