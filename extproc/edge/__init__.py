"""The only place that imports Envoy's protos: ext_proc stream handling and plain-data conversion."""
