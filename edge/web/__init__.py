"""The bin's local web page: upload a photo to classify it, and follow the running bin live.

Standard library HTTP only; the page's files live in ``static/`` and need no build step.

Usage:
    from edge.web.server import WebServer
    server = WebServer(classifier=classifier, decider=decider, status_provider=daemon.status)
    server.start()
"""
