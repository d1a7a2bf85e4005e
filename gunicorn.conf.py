"""gunicorn settings for the Procfile.  One worker (the pool and its sockets live in-process),
many threads (gthread, behind the front door of phantom_scraper/door: whole requests are read in
the poller before a thread sees them), never --preload (threads started before the fork do not
exist in the worker).  Background work starts per worker in post_worker_init; SIGTERM drains in worker_exit."""
import sys

from gunicorn import glogging

from phantom_scraper.config import Settings
from phantom_scraper.redact import RedactingFilter

_SETTINGS = Settings.from_env()  # the variables below are in phantom_scraper.config.VARIABLES

workers = 1  # explicit: WEB_CONCURRENCY must not multiply the pool
worker_class = "phantom_scraper.door.worker.DoorWorker"  # gthread that reads whole requests before a thread
threads = _SETTINGS.gunicorn_threads
preload_app = False
timeout = 30
graceful_timeout = _SETTINGS.graceful_timeout_s
keepalive = 5  # non-zero: keep-alive on; the door closes idle connections after HTTP_KEEPALIVE_IDLE_S
accesslog = "-" if _SETTINGS.access_log else None
errorlog = "-"


class RedactingLogger(glogging.Logger):
    """Access log lines never carry the token of /webhook/<token>: every handler of both logs
    redacts the whole formatted line (RedactingFilter), once per line rather than once per atom."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):  # error lines can quote a request path too
            for handler in log.handlers:
                if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                    handler.addFilter(RedactingFilter())


logger_class = RedactingLogger


def post_worker_init(worker):
    import ultra_simple_server

    app = worker.wsgi
    runtime = app.extensions["runtime"]
    ultra_simple_server.configure_logging(runtime.settings)
    runtime.boot()
    # The URLs (and in sim mode the paper-trading secret and admin login) once at start: on a
    # hosting platform the log is the only place a user can read them.
    host, _, port = (worker.cfg.bind[0] if worker.cfg.bind else "127.0.0.1:8000").rpartition(":")
    host = "localhost" if host in ("0.0.0.0", "[::]", "") else host
    sys.stdout.write(ultra_simple_server.startup_banner(runtime.settings, f"http://{host}:{port}"))
    sys.stdout.flush()


def worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("runtime") if app is not None else None
    if runtime is not None:
        runtime.shutdown(timeout_s=runtime.settings.shutdown_timeout_s)
