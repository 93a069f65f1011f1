"""``trackii-eval dashboard --serve``: the dashboard folder on a local web server."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

__all__ = ["serve"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no request log on stderr
        pass


def serve(folder: str | Path, *, port: int = 0, background: bool = False
          ) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``folder`` on ``127.0.0.1`` (never on other interfaces).

    Parameters
    ----------
    folder : str or Path
        The dashboard's output folder (``dashboard.html`` and ``reports/``).
    port : int
        Port; 0 picks a free one.
    background : bool
        Serve from a daemon thread and return at once (tests); otherwise the caller runs
        ``server.serve_forever()``.

    Returns
    -------
    (server, url)
        ``url`` opens the dashboard; call ``server.shutdown()`` to stop a background server.
    """
    handler = functools.partial(_Quiet, directory=str(Path(folder).resolve()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}/dashboard.html"
    if background:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url
