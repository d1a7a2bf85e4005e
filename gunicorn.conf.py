"""gunicorn settings for the Procfile.  One worker (the pool and its sockets live in-process),
many threads (gthread, behind the front door of phantom_scraper/door: whole requests are read in
the poller before a thread sees them), never --preload (threads started before the fork do not
exist in the worker).  Background work starts per worker in post_worker_init; SIGTERM drains in worker_exit."""
import os

from gunicorn import glogging

from phantom_scraper.redact import RedactingFilter, redact

workers = 1  # explicit: WEB_CONCURRENCY must not multiply the pool
worker_class = "phantom_scraper.door.worker.DoorWorker"  # gthread that reads whole requests before a thread
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
preload_app = False
timeout = 30
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT_S", "15"))
keepalive = 5
accesslog = "-" if os.environ.get("ACCESS_LOG", "1") != "0" else None
errorlog = "-"


class RedactingLogger(glogging.Logger):
    """Access log lines never carry the token of /webhook/<token>."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):  # error lines can quote a request path too
            for handler in log.handlers:
                if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                    handler.addFilter(RedactingFilter())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in list(atoms.items()):  # request line, path, query, referer, raw_uri...
            if isinstance(value, str):
                atoms[key] = redact(value)
        return atoms


logger_class = RedactingLogger


def post_worker_init(worker):
    import ultra_simple_server

    ultra_simple_server.configure_logging()
    app = worker.wsgi
    app.extensions["runtime"].boot()


def worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("runtime") if app is not None else None
    if runtime is not None:
        runtime.shutdown(timeout_s=float(os.environ.get("SHUTDOWN_TIMEOUT_S", "10")))
