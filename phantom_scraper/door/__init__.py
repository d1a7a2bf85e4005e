"""The front door: connections are read in full before they cost a worker thread.

* ``framing`` - where a request's head and body end (no I/O);
* ``policy``  - which address a request comes from, the allow-list, the connection caps;
* ``answers`` - the in-memory answer a thread writes (the poller sends it);
* ``worker``  - the gunicorn worker class (``phantom_scraper.door.worker.DoorWorker``) that
  reads requests in its poller under deadlines and hands only complete ones to a thread.
"""
