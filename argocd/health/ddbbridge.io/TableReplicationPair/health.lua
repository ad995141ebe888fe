-- Argo CD health of a ddbbridge.io/TableReplicationPair, read in kstatus order:
--   1. being deleted                                      -> Progressing
--   2. no status, or status.observedGeneration below metadata.generation
--                                                         -> Progressing (the operator has not seen it)
--   3. Stalled=True (the spec, or something only a person can fix, blocks it)
--                                                         -> Degraded
--   4. ResyncRequired=True (an outage outlived the stream retention: backfill + verify)
--                                                         -> Degraded
--   5. spec.paused                                        -> Suspended
--   6. Ready=False with a reason that needs a person (DeadLetters, ReplicationFailing,
--      ResyncRequired)                                    -> Degraded
--   7. Ready=False with any other reason, Ready=Unknown, or no Ready
--                                                         -> Progressing (still converging)
--   8. Ready=True but InitialSyncComplete=False (spec.initialSync still copying the items the
--      tables held before): reason ItemsRejected          -> Degraded
--                                       any other reason  -> Progressing
--   9. Ready=True                                         -> Healthy
-- A condition whose observedGeneration is below metadata.generation describes an older spec and
-- is ignored. Argo CD opens only the base, table and a safe os library: no string or math here.

local DEGRADED_READY_REASONS = {
  DeadLetters = true,
  ReplicationFailing = true,
  ResyncRequired = true,
}

local DEGRADED_INITIAL_SYNC_REASONS = {
  ItemsRejected = true,
}

local hs = {}
local generation = obj.metadata.generation

local function find(conditions, kind)
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function current(condition)
  if condition == nil then
    return false
  end
  if condition.observedGeneration == nil or generation == nil then
    return true
  end
  return condition.observedGeneration >= generation
end

local function describe(condition)
  local text = condition.type .. ": " .. (condition.reason or "NoReason")
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: the operator is removing what the pair created"
  return hs
end

if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the pair"
  return hs
end

if generation ~= nil and obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
    .. " (observed " .. tostring(obj.status.observedGeneration) .. ")"
  return hs
end

local conditions = obj.status.conditions or {}

local stalled = find(conditions, "Stalled")
if current(stalled) and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local resync = find(conditions, "ResyncRequired")
if current(resync) and resync.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(resync)
  return hs
end

if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "Replication is paused (spec.paused)"
  return hs
end

local ready = find(conditions, "Ready")
if not current(ready) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  if generation ~= nil then
    hs.message = hs.message .. " of generation " .. tostring(generation)
  end
  return hs
end

if ready.status ~= "True" then
  if ready.status == "False" and DEGRADED_READY_REASONS[ready.reason] then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(ready)
  return hs
end

local initialSync = find(conditions, "InitialSyncComplete")
if current(initialSync) and initialSync.status ~= "True" then
  if initialSync.status == "False" and DEGRADED_INITIAL_SYNC_REASONS[initialSync.reason] then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(initialSync)
  return hs
end

hs.status = "Healthy"
hs.message = describe(ready)
return hs
