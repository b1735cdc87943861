"""The admin API's rules, one module per endpoint group, callable without HTTP.

Handlers (:mod:`dendrite_admin_ext.handlers`) parse, authorise, call a service and render;
services hold the rules and talk to storage through its protocols.
"""
