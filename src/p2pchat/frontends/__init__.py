"""The front ends, built on the public API: the commands (``cli``), the console, the web
page (``web*``, with its static files in ``web/``) and the scripted demo
(``python -m p2pchat.frontends.demo``). See docs/architecture.md."""
