-- The transcoder prints a gRPC error as {"code":5,"message":"…","details":[]}; OpenAI clients expect
-- {"error":{…}}. The message is already JSON-escaped, so it is moved as it is.
function envoy_on_response(handle)
  strip_grpc_headers(handle)
  if handle:headers():get(":status") ~= "404" then return end
  local body = handle:body()
  local message = string.match(body:getBytes(0, body:length()), '"message":"(.*)","details"') or "Not found."
  body:setBytes('{"error":{"message":"' .. message ..
    '","type":"invalid_request_error","param":"model","code":"model_not_found"}}')
  handle:headers():replace("content-type", "application/json")
end
