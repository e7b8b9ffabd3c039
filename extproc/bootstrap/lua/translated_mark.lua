-- A Messages body a fast route could take (small, already buffered by json_to_metadata): whether it holds the
-- mark of thinking another provider wrote, found by one byte search as the full path's first look finds it
-- (translate/held.py `carries_translated`). Such a body takes the full path, which leaves that thinking out.
-- NAMESPACE, KEY and MARK are set before this, by the bootstrap.
function envoy_on_request(handle)
  local body = handle:body()
  if body ~= nil and string.find(body:getBytes(0, body:length()), MARK, 1, true) ~= nil then
    handle:streamInfo():dynamicMetadata():set(NAMESPACE, KEY, true)
    handle:clearRouteCache()  -- the routes are matched again, on the mark
  end
end
