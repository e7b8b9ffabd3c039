-- A fast stream's answer keeps its first and last bytes in dynamic metadata, for the answers log: the processor
-- reads the usage there with its own SSE readers (Anthropic's message_start and last message_delta, the usage
-- chunk of a chat stream). Each chunk goes on to the client as it comes; nothing is buffered.
-- NAMESPACE, HEAD, TAIL (its keys), KEEP (bytes of each end) and ENDS (the last event of each API's stream) are set
-- before this, by the bootstrap. A cut falls at a line's end: no character is split, and the metadata stays valid
-- UTF-8. The ends are kept as soon as a chunk holds a stream's last event, before that chunk goes on: a client that
-- closes at its last byte may end this script before its loop does.

local function to_last_line(s)  -- up to the end of its last whole line
  local last = nil
  local at = string.find(s, "\n", 1, true)
  while at ~= nil do
    last = at
    at = string.find(s, "\n", at + 1, true)
  end
  return last and string.sub(s, 1, last) or ""
end

local function from_first_line(s)  -- from the start of its first whole line
  local at = string.find(s, "\n", 1, true)
  return at and string.sub(s, at + 1) or ""
end

local function keep(handle, key, value)  -- the metadata object is fetched anew: one held across a yield is void
  handle:streamInfo():dynamicMetadata():set(NAMESPACE, key, value)
end

local function keep_ends(handle, head, tail, dropped)
  if not dropped then  -- nothing left out between the two: the whole answer, as it came
    keep(handle, HEAD, head .. tail)
  else
    keep(handle, HEAD, to_last_line(head))
    keep(handle, TAIL, from_first_line(tail))
  end
end

local function ends(bytes)
  for _, last in ipairs(ENDS) do
    if string.find(bytes, last, 1, true) ~= nil then return true end
  end
  return false
end

function envoy_on_response(handle)
  local kind = handle:headers():get("content-type") or ""
  if string.find(kind, "text/event-stream", 1, true) == nil then
    return
  end
  local head, tail, full, dropped = "", "", false, false
  for chunk in handle:bodyChunks() do
    local bytes = chunk:getBytes(0, chunk:length())
    if not full then
      head = head .. bytes
      if #head >= KEEP then  -- set now: a stream cut later still has its start (Anthropic's input tokens)
        full = true
        tail = string.sub(head, KEEP + 1)
        head = string.sub(head, 1, KEEP)
        keep(handle, HEAD, to_last_line(head))
      end
    else
      tail = tail .. bytes
    end
    if #tail > KEEP then
      tail = string.sub(tail, -KEEP)
      dropped = true
    end
    if ends(bytes) then
      keep_ends(handle, head, tail, dropped)
    end
  end
  keep_ends(handle, head, tail, dropped)  -- again, whole: what followed the last event too
end
