-- The transcoder (which runs before this on responses) needed grpc-status; HTTP clients need none of these.
local function strip_grpc_headers(handle)
  for _, name in ipairs({"grpc-status", "grpc-message", "grpc-accept-encoding", "grpc-encoding"}) do
    handle:headers():remove(name)
  end
end
