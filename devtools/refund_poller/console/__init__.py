"""``refund-poller console``: a local web page with a refund's whole story (list, graph, polls, events, DLQ).

Server-rendered by Flask and Jinja2 (autoescaped templates), drawn as server-side SVG, no JavaScript and no CDN:
it works offline, and every string a provider or merchant supplied reaches the page as text only.
"""
