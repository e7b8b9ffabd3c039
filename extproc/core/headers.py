"""Header names the processor and the Envoy config it renders agree on."""

ROUTE_HEADER = "x-extproc-provider"  # the provider the processor chose; Envoy routes on it
MODEL_HEADER = "x-extproc-model"  # the model that served the request
REASON_HEADER = "x-extproc-route"  # why: direct, alias, fallback:<strategy>
PROCESSOR_TOKEN_HEADER = "x-extproc-token"  # Envoy presents it on every ext_proc stream
RESPONSE_HEADERS = (ROUTE_HEADER, MODEL_HEADER, REASON_HEADER)  # copied to the client's response by Envoy
