"""One module per SDK: each maps its SDK's requests, responses and streams to the normal form.

Shared mechanics live in ``_stainless`` (the single-``request``-method SDKs) and ``_stream`` (the
stream followers). Adding a provider means adding one module here and registering it in ``_setup``.
"""
