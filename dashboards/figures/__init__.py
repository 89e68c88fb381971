"""Drawing helpers of ``dashboards.plots``: the shared style and chart primitives."""
