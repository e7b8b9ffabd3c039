-- Each SDK's models list in its own shape. The Anthropic SDK's request (it carries anthropic-version) moves
-- under /extproc/anthropic, the Gemini SDK's (x-goog-api-key or x-goog-api-client; it asks /v1/models) to
-- Gemini's /v1beta/models; the route is matched again there and the transcoder picks that shape's method.
-- /v1/models/available stays the gateway's own (OpenAI-shaped) list.
local function starts(s, prefix)
  return string.sub(s, 1, #prefix) == prefix
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local path = headers:get(":path") or ""
  local api = nil
  if starts(path, "/v1beta/models") then
    api = "gemini"
  elseif starts(path, "/v1/models") and not starts(path, "/v1/models/available") then
    if headers:get("anthropic-version") ~= nil then
      headers:replace(":path", "/extproc/anthropic" .. path)
      api = "anthropic"
    elseif headers:get("x-goog-api-key") ~= nil or headers:get("x-goog-api-client") ~= nil then
      headers:replace(":path", "/v1beta" .. string.sub(path, 4))
      api = "gemini"
    end
  end
  if api ~= nil then
    handle:streamInfo():dynamicMetadata():set("extproc.models", "api", api)
  end
end

-- The transcoder prints a gRPC error as {"code":5,"message":"…","details":[]}; clients expect their API's
-- envelope. The message is already JSON-escaped, so it is moved as it is.
function envoy_on_response(handle)
  strip_grpc_headers(handle)
  local status = handle:headers():get(":status")
  if status ~= "404" and status ~= "401" then return end
  local body = handle:body()
  local message = string.match(body:getBytes(0, body:length()), '"message":"(.*)","details"') or "Not found."
  local seen = handle:streamInfo():dynamicMetadata():get("extproc.models")
  local api = seen ~= nil and seen["api"] or "openai"
  if api == "anthropic" then
    local kind = status == "401" and "authentication_error" or "not_found_error"
    body:setBytes('{"type":"error","error":{"type":"' .. kind .. '","message":"' .. message .. '"}}')
  elseif api == "gemini" then
    local google = status == "401" and "UNAUTHENTICATED" or "NOT_FOUND"
    body:setBytes('{"error":{"code":' .. status .. ',"message":"' .. message .. '","status":"' .. google .. '"}}')
  elseif status == "401" then
    body:setBytes('{"error":{"message":"' .. message .. '","type":"invalid_request_error","param":null,' ..
      '"code":"invalid_api_key"}}')
  else
    body:setBytes('{"error":{"message":"' .. message ..
      '","type":"invalid_request_error","param":"model","code":"model_not_found"}}')
  end
  handle:headers():replace("content-type", "application/json")
end
