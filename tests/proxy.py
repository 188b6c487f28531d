"""tests/test_web.py's import of harness/nginx.py (the nginx the tests and `make hostile` start)."""
from harness.nginx import PROXY, Proxy, start_proxy, stop_proxy  # noqa: F401
