"""The storage contract, one module per storage protocol (``storage/protocols/``): every
backend behaves like the in-memory reference.  A host that implements only some
protocols runs only their modules, e.g. ``pytest tests/contract/test_accounts.py``
(add its storage to ``BACKENDS``/``make_storage`` in ``tests/sql_backends.py``, or give
``st`` another param).  Each feature's own protocols have their contract tests beside
the feature's tests (``tests/test_moderation.py``, ``tests/test_registration_tokens_storage.py``,
``tests/test_users_admin.py``, ``tests/test_rooms_admin.py``, ``tests/test_jobs.py``,
``tests/test_client_login.py``).
"""
