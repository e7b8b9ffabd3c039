-- A fast route's login headers joined to the client's values, as request/mutation.py merge_header_values joins
-- them: the client's values first, then the route's it lacks (anthropic-beta + oauth-2025-04-20). Envoy's
-- APPEND_IF_EXISTS_OR_ADD would add a second header line instead. Headers only: the body is never read. Runs on
-- the routes that name it (LuaPerRoute), with the values in the route's metadata under `merge`. The client's own
-- value is kept under the name prefixed with `keep_as` (none sent: none kept), for the attempts after the first.
local function values_of(list)
  local values = {}
  for v in string.gmatch(list or "", "[^,]+") do
    v = v:match("^%s*(.-)%s*$")
    if v ~= "" then values[#values + 1] = v end
  end
  return values
end

function envoy_on_request(handle)
  local merge = handle:metadata():get("merge")
  if merge == nil then return end
  local keep_as = handle:metadata():get("keep_as")
  local headers = handle:headers()
  for name, ours in pairs(merge) do
    local sent = headers:get(name)  -- get joins several lines with ","
    if keep_as ~= nil then
      if sent ~= nil then headers:replace(keep_as .. name, sent) else headers:remove(keep_as .. name) end
    end
    local values, have = values_of(sent), {}
    for _, v in ipairs(values) do have[v] = true end
    for _, v in ipairs(values_of(ours)) do
      if not have[v] then values[#values + 1] = v end
    end
    headers:replace(name, table.concat(values, ","))
  end
end
