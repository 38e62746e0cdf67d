"""The local cost dashboard that ``tokentrail serve`` shows at ``/``: server-drawn HTML and SVG
(:mod:`.page`), its routes (:mod:`.routes`) and the two static files it needs (``static/``)."""
