-- The transcoder prints a gRPC error as {"code":5,"message":"…","details":[]}; OpenAI clients expect
-- {"error":{…}}. The message is already JSON-escaped, so it is moved as it is.
function envoy_on_response(handle)
  strip_grpc_headers(handle)
  local status = handle:headers():get(":status")
  if status ~= "404" and status ~= "401" then return end
  local body = handle:body()
  local message = string.match(body:getBytes(0, body:length()), '"message":"(.*)","details"') or "Not found."
  if status == "401" then
    body:setBytes('{"error":{"message":"' .. message .. '","type":"invalid_request_error","param":null,' ..
      '"code":"invalid_api_key"}}')
  else
    body:setBytes('{"error":{"message":"' .. message ..
      '","type":"invalid_request_error","param":"model","code":"model_not_found"}}')
  end
  handle:headers():replace("content-type", "application/json")
end
