function envoy_on_response(handle)
  strip_grpc_headers(handle)
end
