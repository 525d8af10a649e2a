"""One TLS context for every upstream HTTP client of a process.

Why: httpx builds a fresh `SSLContext` for each `Client`, loading the whole CA
bundle (20–40 ms of CPU each time), and minyi opens a client per source, per
gateway step and per notifier pass, run after run. The demo month spent about
9 s of its 145 s there. The context is the one httpx would have built
(certificate verification on, the same CA bundle), built once; OpenSSL lets
threads share it.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def tls_context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()
